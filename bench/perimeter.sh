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
CIDR_PORT="${CIDR_PORT:-28082}"

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
config "$CIDR_PORT" 'conditions = [ { input = "{REMOTE_ADDR}", cidr_file = "ranges/allow.txt" } ]' > "$TMP/cidr.toml"
config "$GUARDED_PORT" 'conditions = [ { input = "{REMOTE_ADDR}", cidr_file = "ranges/allow.txt" } ]
rate_limit = { requests = 10000000, per = "1s", burst = 10000000 }' > "$TMP/guarded.toml"

"$PORTICO" member --listen "127.0.0.1:$MEMBER_PORT" --name fe01 >"$TMP/member.log" 2>&1 & PIDS+=($!)
"$PORTICO" run --config "$TMP/plain.toml" >"$TMP/plain.log" 2>&1 & PLAIN_PID=$!; PIDS+=($!)
"$PORTICO" run --config "$TMP/guarded.toml" >"$TMP/guarded.log" 2>&1 & GUARDED_PID=$!; PIDS+=($!)
"$PORTICO" run --config "$TMP/cidr.toml" >"$TMP/cidr.log" 2>&1 & CIDR_PID=$!; PIDS+=($!)
for port in "$MEMBER_PORT" "$PLAIN_PORT" "$GUARDED_PORT" "$CIDR_PORT"; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GUARDED_PORT/status/200")" = 200 ] \
    || die "the guarded Portico does not serve /status/200"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
one_run() { # port pid -> "requests/s cpu-us-per-request" of one wrk run
    local before after out reqs rps
    before="$(cpu_ticks "$2")"
    out="$(wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$1/status/200")"
    after="$(cpu_ticks "$2")"
    grep -q "Non-2xx" <<<"$out" && die "errors from port $1: $out"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
    rps="$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")"
    echo "$rps $(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
}
# Rounds alternate between the two, so a change in the machine's load hits both alike.
# Requests/s: best round. CPU per request (Portico's user + system time / requests): the
# lowest round, steadier than requests/s on a busy machine.
declare -A RPS CPU
for name in plain cidr guarded; do RPS[$name]=0; CPU[$name]=999999; done
for _ in $(seq "$ROUNDS"); do
    for name in plain cidr guarded; do
        case $name in plain) port=$PLAIN_PORT pid=$PLAIN_PID ;; cidr) port=$CIDR_PORT pid=$CIDR_PID ;; guarded) port=$GUARDED_PORT pid=$GUARDED_PID ;; esac
        read -r r c < <(one_run "$port" "$pid")
        [ "$r" -gt "${RPS[$name]}" ] && RPS[$name]="$r"
        CPU[$name]="$(awk -v a="$c" -v b="${CPU[$name]}" 'BEGIN { print (a < b) ? a : b }')"
    done
done
micro="$("$REPO/target/release/examples/perimeter_cost")"
load="$(cut -d' ' -f1-3 /proc/loadavg)"

{
    echo "# Perimeter cost"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average after the run: $load."
    echo "wrk -t2 -c$CONNS, ${DURATION}s, best of $ROUNDS alternating rounds; clear-text HTTP on 127.0.0.1; Portico workers = 2;"
    echo "one \`portico member\` answering /status/200."
    if awk '{exit !($1 > 1.0)}' /proc/loadavg; then
        echo
        echo "**The machine was busy (load average $load on $(nproc) cores): requests/s differ by"
        echo "noise more than by the checks. CPU per request, and the microbenchmark below, are the"
        echo "steadier figures (CPU time is counted in 10 ms ticks: about ±0.1 µs per request here).**"
    fi
    echo
    echo "| route | requests/s | Portico CPU per request |"
    echo "| --- | ---: | ---: |"
    echo "| no perimeter checks | ${RPS[plain]} | ${CPU[plain]} µs |"
    echo "| 10,000-range cidr_file allow list | ${RPS[cidr]} | ${CPU[cidr]} µs |"
    echo "| 10,000-range cidr_file allow list + rate_limit (never reached) | ${RPS[guarded]} | ${CPU[guarded]} µs |"
    echo
    echo "Microbenchmark (\`cargo run --release --example perimeter_cost\`):"
    echo
    echo '```'
    echo "$micro"
    echo '```'
} > "$BENCH_DIR/results-perimeter.md"
cat "$BENCH_DIR/results-perimeter.md"
