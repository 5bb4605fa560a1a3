#!/usr/bin/env bash
# Full-handshake throughput with and without an OCSP staple (issue 13): two Portico
# listeners with the same key type and chain length, one whose leaf names an OCSP responder
# (a real `openssl ocsp` the script starts), one whose leaf does not. The client
# (bench/handshake_load.rs, rustls) asks for OCSP in every handshake, as Windows does.
#
#   bench/ocsp-staple.sh                      # ROUNDS=3 DURATION=10 CONCURRENCY=32
#   ROUNDS=2 DURATION=5 bench/ocsp-staple.sh  # short
#
# Rounds alternate which listener goes first. Loopback only; every process is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-32}"
STAPLE_PORT="${STAPLE_PORT:-28443}"
PLAIN_PORT="${PLAIN_PORT:-28444}"
OCSP_PORT="${OCSP_PORT:-28888}"

cargo build --release --quiet --bin portico --example handshake_load
PORTICO=target/release/portico
LOAD=target/release/examples/handshake_load
T="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT

# PKI: RSA-2048 everywhere (as bench/run.sh), leaf chains = leaf + CA.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -subj /CN=bench-ca -days 2 2>/dev/null
printf 'authorityInfoAccess = OCSP;URI:http://127.0.0.1:%s/\nsubjectAltName = DNS:app.contoso.com\n' "$OCSP_PORT" > "$T/ocsp.ext"
printf 'subjectAltName = DNS:app.contoso.com\n' > "$T/plain.ext"
for kind in ocsp plain; do
    openssl req -newkey rsa:2048 -nodes -keyout "$T/$kind.key" -out "$T/$kind.csr" -subj /CN=app.contoso.com 2>/dev/null
    openssl x509 -req -in "$T/$kind.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
        -extfile "$T/$kind.ext" -days 1 -out "$T/$kind.leaf" 2>/dev/null
    cat "$T/$kind.leaf" "$T/ca.pem" > "$T/$kind.pem"
done
serial="$(openssl x509 -noout -serial -in "$T/ocsp.leaf" | cut -d= -f2)"
printf 'V\t391231235959Z\t\t%s\tunknown\t/CN=app.contoso.com\n' "$serial" > "$T/index.txt"
openssl ocsp -index "$T/index.txt" -port "$OCSP_PORT" -rsigner "$T/ca.pem" -rkey "$T/ca.key" \
    -CA "$T/ca.pem" -ndays 1 -ignore_err > /dev/null 2> "$T/ocsp.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q "waiting for OCSP client" "$T/ocsp.log" && break; sleep 0.1; done

for kind in ocsp plain; do
    port=$([ "$kind" = ocsp ] && echo "$STAPLE_PORT" || echo "$PLAIN_PORT")
    cat > "$T/$kind.toml" <<TOML
workers = 2
[[listener]]
bind = "127.0.0.1:$port"
max_connections_per_client = 100000
tls = { certificates = [ { cert = "$kind.pem", key = "$kind.key" } ] }
[[rule]]
name = "ok"
action = { respond = 200, body = "ok" }
TOML
    RUST_LOG=warn "$PORTICO" run --config "$T/$kind.toml" 2> "$T/$kind.log" &
    PIDS+=($!)
done
for _ in $(seq 100); do
    grep -q "OCSP Response Status: successful" <(openssl s_client -connect "127.0.0.1:$STAPLE_PORT" \
        -servername app.contoso.com -status < /dev/null 2>/dev/null) && break
    sleep 0.2
done
openssl s_client -connect "127.0.0.1:$STAPLE_PORT" -servername app.contoso.com -status < /dev/null 2>/dev/null \
    | grep -q "Cert Status: good" || { echo "no staple on :$STAPLE_PORT" >&2; cat "$T/ocsp.log" "$T/ocsp.log" >&2; exit 1; }

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { "$LOAD" "127.0.0.1:$1" app.contoso.com "$T/ca.pem" "$CONCURRENCY" "$DURATION"; }
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="ocsp plain"; else order="plain ocsp"; fi
    for kind in $order; do
        port=$([ "$kind" = ocsp ] && echo "$STAPLE_PORT" || echo "$PLAIN_PORT")
        echo "round $r $kind: $(run "$port")"
    done
done
