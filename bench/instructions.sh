#!/usr/bin/env bash
# Instructions per request for Portico, counted by valgrind's callgrind: repeatable on a
# noisy machine, where requests/s and even CPU time are not. The figure to track from
# commit to commit. Plain HTTP keep-alive to the bench member (bench/member.rs), 1 KiB
# responses; counters are zeroed after a warm-up, then exactly N requests are counted.
#
#   bench/instructions.sh            # N=2000
#   N=5000 TOP=30 bench/instructions.sh
#   PORTICO=/path/to/other/portico NO_BUILD=1 OUT=/tmp/x.md bench/instructions.sh   # another build
#   TLS=1 OUT=/tmp/tls.md bench/instructions.sh   # HTTPS in, re-encrypted to a TLS member
#   REQUEST=browser OUT=/tmp/b.md bench/instructions.sh   # a browser's 1.3 KB head (OWA cookies)
#
# The client keeps its four connections from the warm-up through the count, so a TLS run
# counts no handshake.
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
# TLS=1: a TLS listener (a public CA's certificate for app.contoso.com) and a TLS member
# (an internal CA's for fe01.contoso.local), as Portico publishes Exchange and SfB.
TLS="${TLS:-0}"
MEMBER_TLS=()
if [ "$TLS" = 1 ]; then
    [ "$FARM" = 1 ] || { echo "TLS=1 measures a farm of one" >&2; exit 1; }
    (
        cd "$TMP"
        for ca in internal public; do
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                -keyout "$ca-ca.key" -out "$ca-ca.pem" -subj "/CN=Bench $ca CA" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        done
        for pair in member:internal:fe01.contoso.local public:public:app.contoso.com; do
            IFS=: read -r name ca dns <<< "$pair"
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
                -out "$name.csr" -subj /CN=x
            printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n' "$dns" > "$name.ext"
            openssl x509 -req -in "$name.csr" -CA "$ca-ca.pem" -CAkey "$ca-ca.key" -CAcreateserial \
                -days 2 -extfile "$name.ext" -out "$name.pem"
        done
    ) > "$TMP/pki.log" 2>&1
    MEMBER_TLS=("$TMP/member.pem" "$TMP/member.key")
    MEMBERS='{ address = "fe01.contoso.local" }'
fi
"$REPO/target/release/examples/bench-member" "$MEMBER_ADDRS" "${MEMBER_TLS[@]}" > "$TMP/member.log" 2>&1 &
PIDS+=($!)
# HOST_RULES=N: N tenant host rules ahead of the one that matches (the cost of a big config).
HOST_RULES="${HOST_RULES:-0}"
# Clear text: the member is reached over HTTP; TLS: re-encrypted, the listener's default.
SCHEME=', scheme = "http"'
cat > "$TMP/portico.toml" <<EOF
workers = 2
[[listener]]
bind = "127.0.0.1:$PROXY_PORT"
EOF
if [ "$TLS" = 1 ]; then
    SCHEME=''
    cat >> "$TMP/portico.toml" <<EOF
tls = { certificates = [ { cert = "$TMP/public.pem", key = "$TMP/public.key" } ] }
[resolve]
"fe01.contoso.local" = ["127.0.0.1"]
[upstream]
ca = "$TMP/internal-ca.pem"
EOF
fi
cat >> "$TMP/portico.toml" <<EOF
[[farm]]
name = "fe"
members = [ $MEMBERS ]
http_port = $MEMBER_PORT
https_port = $MEMBER_PORT
EOF
for i in $(seq 1 "$HOST_RULES"); do
    printf '[[rule]]\nname = "tenant%s"\nmatch = ".*"\nconditions = [ { input = "{HTTP_HOST}", pattern = "^tenant%s\\\\.example\\\\.com$" } ]\naction = { route = "fe"%s }\nstop = true\n' "$i" "$i" "$SCHEME" >> "$TMP/portico.toml"
done
cat >> "$TMP/portico.toml" <<EOF
[[rule]]
name = "everything"
action = { route = "fe"$SCHEME }
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

# 4 keep-alive connections, sequential requests on each: a warm-up of 300 (connections
# made, pools filled, caches warm), then, on the same connections, the N counted ones.
cat > "$TMP/client.py" <<'PY'
import socket, ssl, sys
port, n, tls, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
req = b"GET /status/200 HTTP/1.1\r\nHost: app.contoso.com\r\n"
if len(sys.argv) > 5 and sys.argv[5] == "browser":
    # What a browser sends to OWA: the fields bench/hotpath.py sends with REQUEST=browser.
    sys.dont_write_bytecode = True
    sys.path.insert(0, sys.argv[6])
    from hotpath import BROWSER_FIELDS
    req += b"".join(f.encode() + b"\r\n" for f in BROWSER_FIELDS)
req += b"\r\n"
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
if tls:
    ctx = ssl.create_default_context(cafile=ca)
    conns = [ctx.wrap_socket(c, server_hostname="app.contoso.com") for c in conns]
def run(k):
    for i in range(k):
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
run(300)
print("warm", flush=True)
sys.stdin.readline()
run(n)
print("done", flush=True)
PY
coproc CLIENT { python3 "$TMP/client.py" "$PROXY_PORT" "$N" "$TLS" "$TMP/public-ca.pem" "${REQUEST:-plain}" "$BENCH_DIR"; }
read -r _ <&"${CLIENT[0]}"
callgrind_control -z "$VG" > /dev/null
echo go >&"${CLIENT[1]}"
read -r _ <&"${CLIENT[0]}"
callgrind_control -d "$VG" > /dev/null
sleep 1
out="$(ls -t "$TMP"/cg.* | head -n1)"
total="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
per=$(( total / N ))
{
    echo "# Instructions per request (bench/instructions.sh)"
    echo
    echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); git $(git -C "$REPO" rev-parse --short HEAD); $([ "$TLS" = 1 ] && echo "HTTPS keep-alive re-encrypted to a TLS member" || echo "plain HTTP keep-alive"), $([ "${REQUEST:-plain}" = browser ] && echo "a browser's 1.3 KB request head" || echo "a two-line request head"), 1 KiB responses, $N requests after a warm-up of 300 on the same connections; $HOST_RULES host rules ahead of the matching one; a farm of $FARM."
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
