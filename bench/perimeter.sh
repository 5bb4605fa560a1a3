#!/usr/bin/env bash
# Perimeter cost (issue 12): requests/s through Portico with a 10,000-range allow list and a
# rate limit on the route, against the same route without them; then the in-process
# microbenchmark of the lockout check per authenticated request (examples/perimeter_cost.rs).
# Clear-text HTTP on 127.0.0.1 so the numbers show the checks, not TLS. Writes
# bench/results-perimeter.md and prints it.
#
#   bench/perimeter.sh                       # 2 rounds x 10 s per configuration
#   DURATION=5 ROUNDS=1 bench/perimeter.sh   # quicker
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-2}"
CONNS="${CONNS:-64}"
MEMBER_PORT="${MEMBER_PORT:-24080}"
PLAIN_PORT="${PLAIN_PORT:-28080}"
GUARDED_PORT="${GUARDED_PORT:-28081}"

die() { printf '\nBENCHMARK FAILED: %s\n' "$*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
(cd "$REPO" && cargo build --release --bin portico --example perimeter_cost) || die "build failed"
PORTICO="$REPO/target/release/portico"

TMP="$(mktemp -d /tmp/portico-perimeter.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT

# 10,000 deterministic ranges (an LCG), one of which holds 127.0.0.0/8 so wrk is allowed.
mkdir -p "$TMP/ranges"
awk 'BEGIN { x = 12345; print "# 10,000 ranges for the benchmark"; print "127.0.0.0/8";
  for (i = 1; i < 10000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
    a = int(x / 8388608) % 223 + 1; if (a == 127) a = 128;
    b = int(x / 32768) % 256; c = int(x / 128) % 256;
    printf "%d.%d.%d.0/24\n", a, b, c } }' > "$TMP/ranges/allow.txt"

config() { # port, extra rule lines
    cat <<CFG
workers = 2
[[listener]]
bind = "127.0.0.1:$1"
max_connections_per_client = 100000
[[farm]]
name = "app"
members = [ { address = "127.0.0.1" } ]
http_port = $MEMBER_PORT
[[rule]]
name = "app"
$2
action = { route = "app", scheme = "http" }
stop = true
CFG
}
config "$PLAIN_PORT" "" > "$TMP/plain.toml"
config "$GUARDED_PORT" 'conditions = [ { input = "{REMOTE_ADDR}", cidr_file = "ranges/allow.txt" } ]
rate_limit = { requests = 10000000, per = "1s", burst = 10000000 }' > "$TMP/guarded.toml"

"$PORTICO" member --listen "127.0.0.1:$MEMBER_PORT" --name fe01 >"$TMP/member.log" 2>&1 & PIDS+=($!)
"$PORTICO" run --config "$TMP/plain.toml" >"$TMP/plain.log" 2>&1 & PIDS+=($!)
"$PORTICO" run --config "$TMP/guarded.toml" >"$TMP/guarded.log" 2>&1 & PIDS+=($!)
for port in "$MEMBER_PORT" "$PLAIN_PORT" "$GUARDED_PORT"; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GUARDED_PORT/status/200")" = 200 ] \
    || die "the guarded Portico does not serve /status/200"

rps() { # port -> best requests/s over the rounds
    local best=0
    for _ in $(seq "$ROUNDS"); do
        local out; out="$(wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$1/status/200")"
        grep -q "Non-2xx" <<<"$out" && die "errors from port $1: $out"
        local r; r="$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")"
        [ "$r" -gt "$best" ] && best="$r"
    done
    echo "$best"
}
plain="$(rps "$PLAIN_PORT")"
guarded="$(rps "$GUARDED_PORT")"
micro="$("$REPO/target/release/examples/perimeter_cost")"
load="$(cut -d' ' -f1-3 /proc/loadavg)"

{
    echo "# Perimeter cost"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average after the run: $load."
    echo "wrk -t2 -c$CONNS, ${DURATION}s, best of $ROUNDS; clear-text HTTP on 127.0.0.1; Portico workers = 2;"
    echo "one \`portico member\` answering /status/200."
    echo
    echo "| route | requests/s |"
    echo "| --- | ---: |"
    echo "| no perimeter checks | $plain |"
    echo "| 10,000-range cidr_file allow list + rate_limit (never reached) | $guarded |"
    echo
    echo "Microbenchmark (\`cargo run --release --example perimeter_cost\`):"
    echo
    echo '```'
    echo "$micro"
    echo '```'
} > "$BENCH_DIR/results-perimeter.md"
cat "$BENCH_DIR/results-perimeter.md"
