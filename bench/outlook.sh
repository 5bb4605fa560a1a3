#!/usr/bin/env bash
# Held Outlook Anywhere channel pairs (RPC_IN_DATA + RPC_OUT_DATA) per MiB of proxy memory:
# Portico vs nginx configured the way Exchange publishing guides configure it
# (proxy_buffering off, proxy_request_buffering off, proxy_http_version 1.1, long timeouts,
# client_max_body_size 0). Same backend for both: one `portico member --role exchange` over
# HTTPS; both proxies re-encrypt. Writes bench/outlook-results.md and prints it.
#
#   bench/outlook.sh                # 1000 pairs (4000 sockets per proxy)
#   PAIRS=300 bench/outlook.sh      # smaller
#   PORTICO=target/debug/portico bench/outlook.sh   # skip the release build
#
# Memory is the proxies' resident set (nginx: master + workers) before and while holding,
# read from /proc, as bench/longpoll.py does. Every load stays on 127.0.0.1.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
WORKERS=2
PAIRS="${PAIRS:-1000}"
MEMBER_PORT="${MEMBER_PORT:-15443}"
PORTICO_PORT="${PORTICO_PORT:-15444}"
NGINX_PORT="${NGINX_PORT:-15445}"
HOST=mail.contoso.com
MEMBER_HOST=ex01.contoso.local

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nBENCHMARK FAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (nginx workers run as www-data)"
command -v nginx >/dev/null || die "nginx is not installed (apt-get install nginx)"
PY=/usr/bin/python3; [ -x "$PY" ] || PY="$(command -v python3)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

if [ -z "${PORTICO:-}" ]; then
    say "cargo build --release"
    (cd "$REPO" && cargo build --release) || die "cargo build --release failed"
    PORTICO="$REPO/target/release/portico"
fi
PORTICO="$(cd "$(dirname "$PORTICO")" && pwd)/$(basename "$PORTICO")"

hard="$(ulimit -Hn)"; [ "$hard" = unlimited ] && hard=1048576
want=$(( PAIRS * 4 + 2000 ))
[ "$hard" -ge "$want" ] || die "open-file hard limit $hard < $want needed for $PAIRS pairs (lower PAIRS)"
ulimit -n "$hard"

TMP="$(mktemp -d /tmp/portico-outlook.XXXXXX)"; RUN="$TMP/run"; mkdir -p "$RUN"
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" != 0 ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for port in $MEMBER_PORT $PORTICO_PORT $NGINX_PORT; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then die "port $port is in use"; fi
done

say "PKI in $TMP/pki"
P="$TMP/pki"; mkdir -p "$P"
(
    cd "$P"
    ca() {
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -keyout "$1.key" -out "$1.pem" \
            -subj "$2" -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    }
    leaf() {
        openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$3" > "$1.ext"
        openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -CAcreateserial -days 2 -sha256 \
            -extfile "$1.ext" -out "$1.crt" 2>/dev/null
        cat "$1.crt" "$4.pem" > "$1.pem"
    }
    ca public-ca "/O=Bench Public CA/CN=Bench Public Root CA"
    # Extended Protection: the proxies and the Exchange server present the same certificate.
    leaf mail "/O=Contoso/CN=$HOST" "DNS:$HOST,DNS:autodiscover.contoso.com,DNS:$MEMBER_HOST" public-ca
)

say "Exchange member on 127.0.0.1:$MEMBER_PORT"
"$PORTICO" member --role exchange --listen "127.0.0.1:$MEMBER_PORT" --cert "$P/mail.pem" \
    --key "$P/mail.key" --name ex01 > "$RUN/member.log" 2>&1 &
PIDS+=($!)

cat > "$TMP/portico.toml" <<EOF
workers = $WORKERS
[[listener]]
bind = "127.0.0.1:$PORTICO_PORT"
tls = { certificates = [ { cert = "pki/mail.pem", key = "pki/mail.key" } ], http1_only = [ "$HOST" ] }
[resolve]
"$MEMBER_HOST" = ["127.0.0.1"]
[upstream]
ca = "pki/public-ca.pem"
[[farm]]
name = "exchange"
members = [ { address = "$MEMBER_HOST" } ]
https_port = $MEMBER_PORT
timeout = "3600s"
max_pinned_per_member = $(( PAIRS * 2 + 1000 ))
[[rule]]
name = "exchange"
action = { route = "exchange" }
EOF
"$PORTICO" validate --config "$TMP/portico.toml" >&2 || die "portico rejects the bench config"
say "portico on 127.0.0.1:$PORTICO_PORT (workers = $WORKERS)"
"$PORTICO" run --config "$TMP/portico.toml" > "$RUN/portico.log" 2>&1 &
PORTICO_PID=$!; PIDS+=($PORTICO_PID)

NG="$TMP/nginx"; mkdir -p "$NG/logs" "$NG/tmp"
chmod 0755 "$TMP"
NGINX_USER=www-data; id -u "$NGINX_USER" >/dev/null 2>&1 || NGINX_USER=nobody
chown -R "$NGINX_USER" "$NG/tmp"
cat > "$NG/nginx.conf" <<EOF
# As Exchange publishing guides write it: no buffering either way, HTTP/1.1 to the server,
# long timeouts, no body size limit (RPC_IN_DATA declares 1 GB and more).
user $NGINX_USER;
worker_processes $WORKERS;
worker_rlimit_nofile $hard;
daemon off;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events { worker_connections $(( PAIRS * 4 + 1000 )); }
http {
    access_log off;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    upstream exchange { server 127.0.0.1:$MEMBER_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        server_name $HOST;
        ssl_certificate $P/mail.pem;
        ssl_certificate_key $P/mail.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location / {
            proxy_pass https://exchange;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_set_header Connection "Keep-Alive";
            proxy_set_header Host \$host;
            proxy_ssl_name $MEMBER_HOST;
            proxy_ssl_server_name on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $P/public-ca.pem;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            keepalive_timeout 3600s;
            send_timeout 3600s;
            client_body_timeout 3600s;
        }
    }
}
EOF
nginx -t -p "$NG" -c "$NG/nginx.conf" 2>"$RUN/nginx-t.log" || { cat "$RUN/nginx-t.log" >&2; die "nginx rejects the bench config"; }
say "nginx on 127.0.0.1:$NGINX_PORT (worker_processes $WORKERS)"
nginx -p "$NG" -c "$NG/nginx.conf" > "$RUN/nginx.log" 2>&1 &
NGINX_PID=$!; PIDS+=($NGINX_PID)

for port in $MEMBER_PORT $PORTICO_PORT $NGINX_PORT; do
    for _ in $(seq 1 100); do
        ss -Hltn "sport = :$port" | grep -q . && break
        sleep 0.1
    done
    ss -Hltn "sport = :$port" | grep -q . || die "nothing listens on $port"
done

rc=0
for px in portico nginx; do
    if [ $px = portico ]; then port=$PORTICO_PORT; pid=$PORTICO_PID; else port=$NGINX_PORT; pid=$NGINX_PID; fi
    say "$px: holding $PAIRS Outlook Anywhere channel pairs"
    "$PY" "$BENCH_DIR/outlook.py" --port $port --cafile "$P/public-ca.pem" --pid $pid \
        --count "$PAIRS" --label $px > "$RUN/$px.json" 2> "$RUN/$px.err" || rc=$?
    sed 's/^/    /' "$RUN/$px.err" >&2
    [ "$rc" = 0 ] || die "$px did not hold every pair (exit $rc): $(cat "$RUN/$px.json")"
    sleep 2   # let the held channels close before the next proxy is measured
done

OUT="$BENCH_DIR/outlook-results.md"
"$PY" - "$RUN/portico.json" "$RUN/nginx.json" "$LOAD_BEFORE" "$(nproc)" "$(nginx -v 2>&1)" > "$OUT" <<'PYEOF'
import json, sys
p, n = (json.load(open(f)) for f in sys.argv[1:3])
load, cores, ngv = sys.argv[3:6]
print("# Outlook Anywhere channel pairs per MiB of proxy memory\n")
print(f"Written by `bench/outlook.sh`. {p['pairs_held']} RPC_IN_DATA + RPC_OUT_DATA pairs held at once "
      "through each proxy (4 sockets per pair in the proxy: two to the client, two to the member), "
      "TLS both sides, `Authorization: Negotiate` on each request.\n")
print(f"Machine: {cores} cores, load average before the run {load}; the machine was shared with other "
      "builds, which moves CPU figures but not resident memory much.\n")
print("| proxy | pairs held | streaming after settle | idle RSS (KiB) | held RSS (KiB) | KiB per pair | pairs per MiB |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for r in (p, n):
    print(f"| {r['label']} | {r['pairs_held']} | {r['pairs_streaming_after_settle']} | {r['idle_rss_kib']} | "
          f"{r['held_rss_kib']} | {r['kib_per_pair']} | {r['pairs_per_mib']} |")
if p["pairs_per_mib"] and n["pairs_per_mib"]:
    print(f"\nPortico holds **{p['pairs_per_mib'] / n['pairs_per_mib']:.2f} x** the channel pairs per MiB that nginx does.")
print(f"\nnginx: {ngv.replace('nginx version: ', '')}, worker_processes 2, `proxy_buffering off; "
      "proxy_request_buffering off; proxy_http_version 1.1; client_max_body_size 0;` 3600 s timeouts. "
      "Portico: workers = 2, farm timeout 3600 s, each request pinned to its own member connection (NTLM rule).")
PYEOF
cat "$OUT"
