#!/usr/bin/env bash
# Portico vs nginx (Debian's package) on this machine, in one run: same backend (one
# `portico member` over HTTPS), same worker count (2), both re-encrypting to the member
# with keep-alive. Writes bench/results.md and prints the table. Needs root (apt-get,
# /etc/hosts). Every load stays on 127.0.0.1. See bench/README.md.
#
#   bench/run.sh                 # everything (about 3-5 minutes after the build)
#   DURATION=3 ROUNDS=1 HELD=500 bench/run.sh   # a quick, smaller run
#   KEEP_TMP=1 bench/run.sh      # keep raw wrk outputs and logs (always kept on failure)
#
# Issue 3 rows (Portico only): the keep-alive scenario through a farm of three members
# (a second Portico on FARM_PORT) against the farm of one, and NTLM connections pinned
# to members per MiB of that second Portico's memory (NTLM connections, default 2000).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"

WORKERS=2
DURATION="${DURATION:-10}"          # seconds per wrk run
ROUNDS="${ROUNDS:-2}"               # runs of each wrk scenario per proxy
HELD="${HELD:-5000}"                # long polls held at once
MEMBER_PORT="${MEMBER_PORT:-14443}"
PORTICO_PORT="${PORTICO_PORT:-18443}"
NGINX_PORT="${NGINX_PORT:-19443}"
FARM_PORT="${FARM_PORT:-18444}"     # second Portico: the same farm with three members
NTLM="${NTLM:-2000}"                # NTLM-authenticated (pinned) connections held at once
MEMBER2_PORT=$(( MEMBER_PORT + 1 ))
MEMBER3_PORT=$(( MEMBER_PORT + 2 ))
HOST=app.contoso.com
MEMBER_HOST=fe01.contoso.local

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nBENCHMARK FAILED: %s\n' "$*" >&2; exit 1; }

NOTES=()
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
    printf '\n!!!!! the machine is busy before the run (load average %s): numbers will be noisy.\n' "$LOAD_BEFORE" >&2
    NOTES+=(--note "WARNING: the machine was busy when the run started (load average $LOAD_BEFORE on $(nproc) cores): requests/s and MiB/s are noisy; the CPU-per-request rows are the steadier comparison")
fi
[ "$(id -u)" = 0 ] || die "run as root (installs packages, edits /etc/hosts for $HOST)"

# --- 1. tools and the build ----------------------------------------------------------
need=()
for t in nginx:nginx wrk:wrk h2load:nghttp2-client python3:python3 openssl:openssl curl:curl; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
PY=/usr/bin/python3; [ -x "$PY" ] || PY="$(command -v python3)"

say "cargo build --release"
(cd "$REPO" && cargo build --release) || die "cargo build --release failed"
PORTICO="$REPO/target/release/portico"

# --- limits --------------------------------------------------------------------------
hard="$(ulimit -Hn)"
[ "$hard" = unlimited ] && hard=1048576
most=$(( HELD > NTLM ? HELD : NTLM ))
want=$(( most * 2 + 2000 ))          # a proxy holds a client and a member socket per poll
if [ "$hard" -lt "$want" ]; then
    new=$(( (hard - 2000) / 2 ))
    printf '\n!!!!! open-file hard limit is %s: %s long polls need %s descriptors per proxy.\n!!!!! HOLDING ONLY %s LONG POLLS INSTEAD OF %s.\n\n' \
        "$hard" "$HELD" "$want" "$new" "$HELD" >&2
    HELD="$new"
    [ "$NTLM" -gt "$new" ] && NTLM="$new"
fi
ulimit -n "$hard"
NOFILE="$hard"

# --- temp dir, processes, /etc/hosts: all undone on exit ----------------------------
TMP="$(mktemp -d /tmp/portico-bench.XXXXXX)"
RUN="$TMP/run"; mkdir -p "$RUN"
PIDS=()
HOSTS_MARK="# portico-bench $$"
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if grep -qF "$HOSTS_MARK" /etc/hosts 2>/dev/null; then
        grep -vF "$HOSTS_MARK" /etc/hosts > "$TMP/hosts.new" && cat "$TMP/hosts.new" > /etc/hosts
    fi
    if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "raw outputs and logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $MEMBER_PORT $MEMBER2_PORT $MEMBER3_PORT $PORTICO_PORT $FARM_PORT $NGINX_PORT; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then die "port $port is in use"; fi
done

# wrk sends the URL's host as SNI and Host, and resolves it itself: map app.contoso.com
# to loopback for the duration of the run (the line is removed on exit).
if ! grep -Eq "^127\.0\.0\.1[[:space:]].*\b$HOST\b" /etc/hosts; then
    printf '127.0.0.1 %s %s\n' "$HOST" "$HOSTS_MARK" >> /etc/hosts
fi

# --- 2. throwaway PKI ------------------------------------------------------------------
say "PKI in $TMP/pki"
P="$TMP/pki"; mkdir -p "$P"
(
    cd "$P"
    ca() {  # name, subject
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -keyout "$1.key" -out "$1.pem" \
            -subj "$2" -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    }
    leaf() {  # name, subject, SANs, ca
        openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$3" > "$1.ext"
        openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -CAcreateserial -days 2 -sha256 \
            -extfile "$1.ext" -out "$1.crt" 2>/dev/null
        cat "$1.crt" "$4.pem" > "$1.pem"   # chain: leaf then issuer
    }
    ca internal-ca "/O=Contoso/CN=Contoso Internal Root CA"
    # One certificate for the three members fe01..fe03 (the farm-of-three scenario).
    leaf member "/O=Contoso/CN=$MEMBER_HOST" "DNS:$MEMBER_HOST,DNS:fe02.contoso.local,DNS:fe03.contoso.local" internal-ca
    ca public-ca "/O=Bench Public CA/CN=Bench Public Root CA"
    leaf public "/O=Contoso/CN=*.contoso.com" "DNS:*.contoso.com,DNS:contoso.com" public-ca
)

# --- 3. backend and proxies ----------------------------------------------------------
say "member on 127.0.0.1:$MEMBER_PORT"
"$PORTICO" member --listen "127.0.0.1:$MEMBER_PORT" --cert "$P/member.pem" --key "$P/member.key" \
    --name fe01 > "$RUN/member.log" 2>&1 &
PIDS+=($!)
say "members fe02, fe03 on 127.0.0.1:$MEMBER2_PORT, $MEMBER3_PORT (farm-of-three scenario)"
"$PORTICO" member --listen "127.0.0.1:$MEMBER2_PORT" --cert "$P/member.pem" --key "$P/member.key" \
    --name fe02 > "$RUN/member2.log" 2>&1 &
PIDS+=($!)
"$PORTICO" member --listen "127.0.0.1:$MEMBER3_PORT" --cert "$P/member.pem" --key "$P/member.key" \
    --name fe03 > "$RUN/member3.log" 2>&1 &
PIDS+=($!)

portico_conf() {  # listen port, members (TOML inline tables)
    cat <<EOF
workers = $WORKERS

[[listener]]
bind = "127.0.0.1:$1"
tls = { certificates = [ { cert = "pki/public.pem", key = "pki/public.key" } ] }
# Every bench client comes from 127.0.0.1: lift any per-client cap (there is none by default; kept explicit), as
# nginx has none.
max_connections_per_client = $(( most + 1000 ))

[resolve]
"$MEMBER_HOST" = ["127.0.0.1"]
"fe02.contoso.local" = ["127.0.0.1"]
"fe03.contoso.local" = ["127.0.0.1"]

[upstream]
ca = "pki/internal-ca.pem"

[[farm]]
name = "fe"
members = [ $2 ]
https_port = $MEMBER_PORT
ssl_offload = false
timeout = "960s"
max_pinned_per_member = $(( NTLM + 1000 ))

[[rule]]
name = "everything"
action = { route = "fe" }
stop = true
EOF
}
portico_conf $PORTICO_PORT "{ address = \"$MEMBER_HOST\" }" > "$TMP/portico.toml"
portico_conf $FARM_PORT "{ address = \"$MEMBER_HOST\" }, { address = \"fe02.contoso.local\", https_port = $MEMBER2_PORT }, { address = \"fe03.contoso.local\", https_port = $MEMBER3_PORT }" > "$TMP/portico3.toml"
for c in portico portico3; do
    "$PORTICO" validate --config "$TMP/$c.toml" >&2 || die "portico rejects the bench config $c.toml"
done
say "portico on 127.0.0.1:$PORTICO_PORT (workers = $WORKERS, farm of one member)"
"$PORTICO" run --config "$TMP/portico.toml" > "$RUN/portico.log" 2>&1 &
PORTICO_PID=$!
PIDS+=($PORTICO_PID)
say "portico3 on 127.0.0.1:$FARM_PORT (workers = $WORKERS, the same farm with three members)"
"$PORTICO" run --config "$TMP/portico3.toml" > "$RUN/portico3.log" 2>&1 &
PORTICO3_PID=$!
PIDS+=($PORTICO3_PID)

NG="$TMP/nginx"; mkdir -p "$NG/logs" "$NG/tmp"
# Debian's nginx workers run as www-data: they must reach and write the temp paths
# (proxy_buffering spills large responses to proxy_temp_path).
chmod 0755 "$TMP"
NGINX_USER=www-data
id -u "$NGINX_USER" >/dev/null 2>&1 || NGINX_USER=nobody
chown -R "$NGINX_USER" "$NG/tmp"
cat > "$NG/nginx.conf" <<EOF
# Bench config: own prefix, not the system nginx. proxy_buffering is left at its default (on).
user $NGINX_USER;
worker_processes $WORKERS;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events {
    worker_connections $(( HELD * 2 + 1000 ));   # a held poll uses a client and a member connection
}
http {
    access_log off;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    keepalive_requests 1000000;

    upstream fe {
        server 127.0.0.1:$MEMBER_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        server_name $HOST;
        ssl_certificate $P/public.pem;
        ssl_certificate_key $P/public.key;
        ssl_protocols TLSv1.2 TLSv1.3;

        location / {
            proxy_pass https://fe;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_ssl_name $MEMBER_HOST;
            proxy_ssl_server_name on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $P/internal-ca.pem;
            proxy_read_timeout 960s;
            proxy_send_timeout 960s;
        }
    }
}
EOF
nginx -t -p "$NG" -c "$NG/nginx.conf" 2>"$RUN/nginx-t.log" || { cat "$RUN/nginx-t.log" >&2; die "nginx rejects the bench config"; }
say "nginx on 127.0.0.1:$NGINX_PORT (worker_processes $WORKERS)"
nginx -p "$NG" -c "$NG/nginx.conf" > "$RUN/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=($NGINX_PID)

port_of() { case "$1" in portico) echo $PORTICO_PORT;; portico3) echo $FARM_PORT;; *) echo $NGINX_PORT;; esac; }
pid_of() { case "$1" in portico) echo $PORTICO_PID;; portico3) echo $PORTICO3_PID;; *) echo $NGINX_PID;; esac; }
curl_proxy() {  # proxy, path, curl args...
    local port; port="$(port_of "$1")"; local path="$2"; shift 2
    curl -sS --max-time 20 --resolve "$HOST:$port:127.0.0.1" --cacert "$P/public-ca.pem" "$@" \
        "https://$HOST:$port$path"
}

# Wait for all three, then check each proxy answers correctly (status, full body).
for i in $(seq 1 100); do
    ok=1
    for port in $MEMBER_PORT $MEMBER2_PORT $MEMBER3_PORT $PORTICO_PORT $FARM_PORT $NGINX_PORT; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || ok=0
    done
    [ $ok = 1 ] && break
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$RUN"/*.log >&2; die "a process exited at start"; }
    done
    sleep 0.1
done
[ $ok = 1 ] || die "member or proxies not listening after 10 s"
sleep 0.5
for pid in "${PIDS[@]}"; do   # a port taken by someone else would look like a listening proxy
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$RUN"/*.log "$NG/logs/error.log" >&2 2>/dev/null; die "a process exited at start (port taken?)"; }
done

say "warm-up and sanity checks"
for px in portico nginx; do
    for i in 1 2 3 4 5; do
        code="$(curl_proxy $px /status/200 -o /dev/null -w '%{http_code}')" || code=curl-error
        [ "$code" = 200 ] || { tail -n 30 "$RUN/$px.log" >&2; die "$px: GET /status/200 gave $code"; }
    done
    size="$(curl_proxy $px '/download?bytes=1048576' -o /dev/null -w '%{http_code} %{size_download}')"
    [ "$size" = "200 1048576" ] || die "$px: 1 MiB download gave '$size'"
    echo=$(curl_proxy $px /echo)
    echo "$px -> member /echo: $echo" >&2
    case "$echo" in *"$HOST"*) ;; *) die "$px: the member did not see Host $HOST";; esac
done
# The farm of three answers from all three members (X-Backend names the member).
seen=""
for i in 1 2 3 4 5 6; do
    code="$(curl_proxy portico3 /status/200 -o /dev/null -D "$TMP/h3" -w '%{http_code}')" || code=curl-error
    [ "$code" = 200 ] || { tail -n 30 "$RUN/portico3.log" >&2; die "portico3: GET /status/200 gave $code"; }
    seen="$seen $(tr -d '\r' < "$TMP/h3" | awk -F': ' 'tolower($1) == "x-backend" {print $2}')"
done
for m in fe01 fe02 fe03; do
    case "$seen" in *"$m"*) ;; *) die "portico3: member $m never answered in 6 requests (saw:$seen)";; esac
done
echo "portico3 -> members:$seen" >&2

# What the handshake scenario measures depends on whether a returning client can resume
# its TLS session with the proxy: record it with openssl s_client.
RESUME=()
for px in portico nginx; do
    port="$(port_of $px)"
    req="GET /status/200 HTTP/1.1\r\nHost: $HOST\r\nConnection: close\r\n\r\n"
    # -ign_eof: read until the server closes, so a TLS 1.3 ticket sent after the handshake is kept.
    printf "$req" | timeout 10 openssl s_client -ign_eof -connect "127.0.0.1:$port" -servername "$HOST" \
        -CAfile "$P/public-ca.pem" -sess_out "$TMP/$px.sess" > /dev/null 2>&1 || true
    if [ -s "$TMP/$px.sess" ] && printf "$req" | timeout 10 openssl s_client -ign_eof -connect "127.0.0.1:$port" \
        -servername "$HOST" -CAfile "$P/public-ca.pem" -sess_in "$TMP/$px.sess" 2>/dev/null | grep -q '^Reused'; then
        RESUME+=("$px: yes")
    else
        RESUME+=("$px: no")
    fi
done
echo "TLS session resumption offered to a returning client: ${RESUME[*]}" >&2

# --- 4. scenarios ----------------------------------------------------------------------
# Each wrk scenario runs ROUNDS times, alternating which proxy goes first (P N, N P, ...),
# so slow drift in what else the machine does hits both alike. The table shows each
# proxy's best round; the proxy's CPU time per request is summed over all rounds.
# TCP connects made on this machine so far (wrk's to the proxy + the proxy's to the member).
active_opens() { awk '/^Tcp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }
run_wrk() {  # proxy, name, round, wrk args..., path
    local px="$1" name="$2" round="$3"; shift 3
    local args=("$@"); local path="${args[-1]}"; unset 'args[-1]'
    local url="https://$HOST:$(port_of "$px")$path" out="$RUN/$px-$name-r$round"
    say "$px: $name (round $round): wrk ${args[*]} $url"
    local c0 c1 o0 o1; c0="$("$PY" "$BENCH_DIR/cpu.py" "$(pid_of "$px")")"; o0="$(active_opens)"
    wrk "${args[@]}" "$url" > "$out.txt" 2>&1 || true
    c1="$("$PY" "$BENCH_DIR/cpu.py" "$(pid_of "$px")")"; o1="$(active_opens)"
    echo "$c0 $c1" > "$out.cpu"
    echo "$o0 $o1" > "$out.opens"
    sed 's/^/    /' "$out.txt" >&2
    echo "    proxy CPU: $(awk '{printf "%.2f", $2 - $1}' "$out.cpu") s; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    kill -0 "$(pid_of "$px")" 2>/dev/null || { tail -n 30 "$RUN/$px.log" >&2; die "$px died during $name"; }
    sleep 2
}
order() {  # round -> the two proxies in this round's order
    if [ $(( $1 % 2 )) = 1 ]; then echo portico nginx; else echo nginx portico; fi
}

# NTLM pinning first, on a portico3 that has served only the sanity checks: its pool then
# holds a handful of idle member connections, so nearly every pinned connection is a new one.
say "portico3: $NTLM NTLM-authenticated connections held (pinned to the three members)"
rc=0
"$PY" "$BENCH_DIR/ntlm.py" --port $FARM_PORT --cafile "$P/public-ca.pem" --pid $PORTICO3_PID \
    --count "$NTLM" --member-port $MEMBER_PORT --member-port $MEMBER2_PORT --member-port $MEMBER3_PORT \
    --label portico3 > "$RUN/portico3-ntlm.json" 2> "$RUN/portico3-ntlm.err" || rc=$?
sed 's/^/    /' "$RUN/portico3-ntlm.err" >&2
kill -0 $PORTICO3_PID 2>/dev/null || { tail -n 30 "$RUN/portico3.log" >&2; die "portico3 died holding NTLM connections"; }
[ $rc = 3 ] && printf '\n!!!!! portico3: NOT ALL %s NTLM CONNECTIONS WERE HELD (see the notes under the table)\n' "$NTLM" >&2

for px in portico nginx; do
    say "$px: warm-up (2 s, not measured)"
    wrk -t2 -c64 -d2s "https://$HOST:$(port_of $px)/status/200" > "$RUN/$px-warmup.txt" 2>&1 || true
    sleep 1
done
for r in $(seq 1 "$ROUNDS"); do
    for px in $(order "$r"); do
        run_wrk $px keepalive "$r" -t2 -c64 -d"${DURATION}s" --latency /status/200
    done
done
# Cost of choosing: the same keep-alive load through the farm of one (portico) and the
# farm of three (portico3), alternating which goes first.
say "portico3: warm-up (2 s, not measured)"
wrk -t2 -c64 -d2s "https://$HOST:$FARM_PORT/status/200" > "$RUN/portico3-warmup.txt" 2>&1 || true
sleep 1
for r in $(seq 1 "$ROUNDS"); do
    if [ $(( r % 2 )) = 1 ]; then pair="portico:farm1 portico3:farm3"; else pair="portico3:farm3 portico:farm1"; fi
    for pn in $pair; do
        run_wrk "${pn%%:*}" "${pn#*:}" "$r" -t2 -c64 -d"${DURATION}s" --latency /status/200
    done
done
for r in $(seq 1 "$ROUNDS"); do
    for px in $(order "$r"); do
        run_wrk $px handshake "$r" -t2 -c32 -d"${DURATION}s" -H 'Connection: close' /status/200
    done
done
for r in $(seq 1 "$ROUNDS"); do
    for px in $(order "$r"); do
        run_wrk $px download "$r" -t2 -c4 -d"${DURATION}s" --timeout 60s '/download?bytes=16777216'
    done
done
for px in portico nginx; do
    say "$px: $HELD held long polls (GET /long-poll?secs=120)"
    rc=0
    "$PY" "$BENCH_DIR/longpoll.py" --port "$(port_of $px)" --cafile "$P/public-ca.pem" \
        --pid "$(pid_of $px)" --count "$HELD" --secs 120 --member-port $MEMBER_PORT --label $px \
        > "$RUN/$px-longpoll.json" 2> "$RUN/$px-longpoll.err" || rc=$?
    sed 's/^/    /' "$RUN/$px-longpoll.err" >&2
    kill -0 "$(pid_of "$px")" 2>/dev/null || { tail -n 30 "$RUN/$px.log" >&2; die "$px died holding long polls"; }
    [ $rc = 3 ] && printf '\n!!!!! %s: NOT ALL %s LONG POLLS WERE HELD (see the notes under the table)\n' "$px" "$HELD" >&2
    sleep 2
done

# Anything the proxies logged at warn/error during the run.
for px in portico portico3 nginx; do
    f="$RUN/$px.log"; [ $px = nginx ] && f="$NG/logs/error.log"
    pat='warn|error|crit|alert|emerg|panic'
    if [ $px = nginx ] && grep -q 'buffered to a temporary file' "$f"; then
        NOTES+=(--note "nginx spooled $(grep -c 'buffered to a temporary file' "$f") download chunks to temporary files (proxy_buffering on, its default), as a stock install would")
        grep -v 'buffered to a temporary file' "$f" > "$f.rest" || true
        f="$f.rest"
    fi
    if grep -Eiq "$pat" "$f" 2>/dev/null; then
        say "$px logged warnings/errors during the run ($(grep -Eic "$pat" "$f") lines); first 20:"
        { grep -Ei "$pat" "$f" | head -n 20 >&2; } || true
        cp "$f" "$RUN/$px-errors.log"
        first="$(grep -Ei "$pat" "$f" | sed 's/\x1b\[[0-9;]*m//g' | head -n 3 | cut -c1-300 | paste -sd'|' | sed 's/|/ ¦ /g')" || true
        NOTES+=(--note "$px logged $(grep -Eic "$pat" "$f") warning/error lines during the run; first: \`$first\`")
    fi
done

# --- 5. table --------------------------------------------------------------------------
rev="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no commit yet')"
if [ -n "$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then rev="$rev + uncommitted changes"; fi
say "results"
"$PY" "$BENCH_DIR/report.py" --dir "$RUN" --out "$BENCH_DIR/results.md" \
    --meta "Date: $(date -u '+%Y-%m-%d %H:%M UTC')" \
    --meta "Machine: nproc = $(nproc), $(uname -sr), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)" \
    --meta "Portico: $("$PORTICO" --version 2>/dev/null), git $rev, workers = $WORKERS" \
    --meta "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //') (Debian package), worker_processes $WORKERS, proxy_buffering on (default)" \
    --meta "Client: $(wrk -v 2>&1 | head -n1 | awk '{print "wrk", $2}'), $ROUNDS round(s) of $DURATION s per scenario and proxy, best round shown; TLS to the proxy with an RSA-2048 certificate, SNI and Host $HOST" \
    --meta "Backend: one \`portico member\` (HTTPS, HTTP/1.1 keep-alive) on 127.0.0.1:$MEMBER_PORT; both proxies re-encrypt to it, verify it against the internal CA and keep up to 64 idle connections to it" \
    --meta "TLS session resumption for openssl s_client -sess_in: ${RESUME[*]}" \
    --meta "Load average (1/5/15 min) before the run: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)" \
    --meta "Farm rows: a second Portico (same config) whose farm has three members fe01..fe03 (\`portico member\` on 127.0.0.1:$MEMBER_PORT, $MEMBER2_PORT, $MEMBER3_PORT; weighted round robin, equal weights, max_pinned_per_member = $(( NTLM + 1000 )))" \
    --meta "Command: bench/run.sh (DURATION=$DURATION ROUNDS=$ROUNDS HELD=$HELD NTLM=$NTLM)" \
    "${NOTES[@]}"
