#!/usr/bin/env bash
# Instructions per request for Portico, counted by valgrind's callgrind: repeatable on a
# noisy machine, where requests/s and even CPU time are not. The figure to track from
# commit to commit. Plain HTTP keep-alive to the bench member (bench/member.rs), 1 KiB
# responses; counters are zeroed after a warm-up, then exactly N requests are counted.
#
#   bench/instructions.sh            # N=2000
#   N=5000 TOP=30 bench/instructions.sh
#   PORTICO=/path/to/other/portico NO_BUILD=1 OUT=/tmp/x.md bench/instructions.sh   # another build
#
# Prints instructions per request and the functions that cost most (inclusive), and writes
# bench/instructions.md. Needs valgrind (apt-get install valgrind).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
N="${N:-2000}"
TOP="${TOP:-25}"
MEMBER_PORT="${MEMBER_PORT:-25080}"
PROXY_PORT="${PROXY_PORT:-25081}"
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

[ "${NO_BUILD:-0}" = 1 ] || (cd "$REPO" && cargo build --release -q && cargo build --release -q --example bench-member)
TMP="$(mktemp -d /tmp/portico-instr.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

# FARM=3: the farm has three members, ports MEMBER_PORT+2 and +3 of the same member process.
FARM="${FARM:-1}"
MEMBERS='{ address = "127.0.0.1" }'
MEMBER_ADDRS="127.0.0.1:$MEMBER_PORT"
if [ "$FARM" = 3 ]; then
    for p in $(( MEMBER_PORT + 2 )) $(( MEMBER_PORT + 3 )); do
        MEMBER_ADDRS="$MEMBER_ADDRS,127.0.0.1:$p"
        MEMBERS="$MEMBERS, { address = \"127.0.0.1\", http_port = $p }"
    done
fi
"$REPO/target/release/examples/bench-member" "$MEMBER_ADDRS" > "$TMP/member.log" 2>&1 &
PIDS+=($!)
# HOST_RULES=N: N tenant host rules ahead of the one that matches (the cost of a big config).
HOST_RULES="${HOST_RULES:-0}"
cat > "$TMP/portico.toml" <<EOF
workers = 2
[[listener]]
bind = "127.0.0.1:$PROXY_PORT"
[[farm]]
name = "fe"
members = [ $MEMBERS ]
http_port = $MEMBER_PORT
EOF
for i in $(seq 1 "$HOST_RULES"); do
    printf '[[rule]]\nname = "tenant%s"\nmatch = ".*"\nconditions = [ { input = "{HTTP_HOST}", pattern = "^tenant%s\\\\.example\\\\.com$" } ]\naction = { route = "fe", scheme = "http" }\nstop = true\n' "$i" "$i" >> "$TMP/portico.toml"
done
cat >> "$TMP/portico.toml" <<EOF
[[rule]]
name = "everything"
action = { route = "fe", scheme = "http" }
stop = true
EOF
valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" \
    "${PORTICO:-$REPO/target/release/portico}" run --config "$TMP/portico.toml" > "$TMP/portico.log" 2>&1 &
VG=$!
PIDS+=($VG)
for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break
    sleep 0.1
done

client() {  # requests: 4 keep-alive connections, sequential requests on each
    python3 - "$PROXY_PORT" "$1" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET /status/200 HTTP/1.1\r\nHost: app.contoso.com\r\n\r\n"
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
for i in range(n):
    s = conns[i % 4]
    s.sendall(req)
    buf = b""
    while True:
        buf += s.recv(65536)
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
            if len(rest) >= length:
                if not head.startswith(b"HTTP/1.1 200"):
                    sys.exit(f"unexpected answer: {head[:40]!r}")
                break
PY
}
client 300                       # warm-up: connections made, pools filled, caches warm
callgrind_control -z "$VG" > /dev/null
client "$N"
callgrind_control -d "$VG" > /dev/null
sleep 1
out="$(ls -t "$TMP"/cg.* | head -n1)"
total="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
per=$(( total / N ))
{
    echo "# Instructions per request (bench/instructions.sh)"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); git $(git -C "$REPO" rev-parse --short HEAD); plain HTTP keep-alive, 1 KiB responses, $N requests after a warm-up of 300; $HOST_RULES host rules ahead of the matching one; a farm of $FARM."
    echo
    echo "**$per instructions per request** (Portico process, all threads; $total in total)."
    echo
    echo "Top $TOP functions by their own instructions (the profile to work from):"
    echo
    echo '```'
    # The worker threads' entry frames (clone, start_thread, block_on) carry every
    # instruction as their own under callgrind's thread accounting: skipped.
    callgrind_annotate --inclusive=no --auto=no --threshold=100 "$out" 2>/dev/null | awk -v top="$TOP" '/file:function/ {on=1; next} on && /^-+$/ {next} on && NF && n < top && $2 !~ /^\((100\.0|9[0-9]\.[0-9]+)%\)$/ {print; n++}' | cut -c1-180
    echo '```'
} > "$TMP/report.md"
cat "$TMP/report.md"
cp "$out" "${CALLGRIND_OUT:-/tmp/portico-callgrind.out}"   # for callgrind_annotate / kcachegrind
cp "$TMP/report.md" "${OUT:-$BENCH_DIR/instructions.md}"
