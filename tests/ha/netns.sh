#!/usr/bin/env bash
# High availability end to end, in network namespaces this script creates and removes:
#   client ── L4 (HAProxy, TCP mode, send-proxy-v2, /readyz checks) ── portico1, portico2 ── members
# Checks: load spreads over both instances; SIGTERM on one loses nothing; SIGKILL on one
# loses at most the requests in flight on it; an affinity cookie from one instance is honoured
# by the other; the member sees the real client address.
# keepalived/IPVS (contrib/keepalived.conf) needs the ip_vs kernel module: when the kernel has
# none, that layer is skipped and said so; HAProxy plays the L4 layer either way.
# Usage: tests/ha/netns.sh [path/to/portico]   (needs root, iproute2, haproxy, curl)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/debug/portico}
say() { printf '[ha] %s\n' "$*"; }
fail() { printf '[ha] FAIL: %s\n' "$*"; exit 1; }

if [ "$(id -u)" != 0 ] || ! ip netns add ha-probe 2>/dev/null; then
  say "SKIPPED: needs root and ip netns"; exit 0
fi
ip netns del ha-probe
command -v haproxy >/dev/null || fail "haproxy is not installed (apt-get install haproxy)"
[ -x "$BIN" ] || fail "no portico binary at $BIN (cargo build first)"
BIN=$(readlink -f "$BIN")

P=ha$$
NS=(net client l4 p1 p2 m1 m2)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for n in "${NS[@]}"; do ip netns del "$P-$n" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# A bridge in its own namespace; one veth per host. 10.77.0.0/24 exists only in here.
ip netns add "$P-net"
ip -n "$P-net" link add br0 type bridge
ip -n "$P-net" link set br0 up
declare -A ADDR=([client]=10.77.0.10 [l4]=10.77.0.20 [p1]=10.77.0.31 [p2]=10.77.0.32 [m1]=10.77.0.41 [m2]=10.77.0.42)
i=0
for h in client l4 p1 p2 m1 m2; do
  i=$((i + 1))
  v="vha$(( $$ % 10000 ))x$i"   # interface names are at most 15 characters
  ip netns add "$P-$h"
  ip link add "$v" type veth peer name eth0 netns "$P-$h"
  ip link set "$v" netns "$P-net"
  ip -n "$P-net" link set "$v" master br0 up
  ip -n "$P-$h" addr add "${ADDR[$h]}/24" dev eth0
  ip -n "$P-$h" link set eth0 up
  ip -n "$P-$h" link set lo up
done
VIP=10.77.0.100
ip -n "$P-l4" addr add "$VIP/24" dev eth0
inns() { local h=$1; shift; ip netns exec "$P-$h" "$@"; }

if [ -e /proc/net/ip_vs ]; then
  say "note: IPVS is available, but this script drives HAProxy as the L4 layer; contrib/keepalived.conf is the IPVS set-up"
else
  say "keepalived/IPVS layer SKIPPED: this kernel has no ip_vs module; HAProxy (send-proxy-v2) is the L4 layer"
fi

# Members.
for m in m1 m2; do
  ip netns exec "$P-$m" "$BIN" member --listen "${ADDR[$m]}:8080" --name "$m" >"$TMP/$m.log" 2>&1 &
  PIDS+=($!); disown
done

# Two Portico instances, one config apart from their addresses.
for p in p1 p2; do
  cat >"$TMP/$p.toml" <<EOT
[[listener]]
bind = "${ADDR[$p]}:8081"
proxy_protocol = { from = ["${ADDR[l4]}/32"] }
[admin]
bind = "${ADDR[$p]}:9901"
[log]
access_log = "$TMP/$p-access.log"
access_format = "json"
[[farm]]
name = "pool"
members = [ { address = "${ADDR[m1]}" }, { address = "${ADDR[m2]}" } ]
http_port = 8080
affinity = { cookie = "MS-WSMAN" }
[[rule]]
name = "pool"
action = { route = "pool", scheme = "http" }
EOT
done
start_portico() {
  # Not through inns: $! must be Portico itself, or the signals below reach only a subshell.
  ip netns exec "$P-$1" "$BIN" run --config "$TMP/$1.toml" >>"$TMP/$1.log" 2>&1 &
  echo $!
}
PP1=$(start_portico p1); PIDS+=($PP1)
PP2=$(start_portico p2); PIDS+=($PP2)

cat >"$TMP/haproxy.cfg" <<EOT
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
frontend publish
    bind $VIP:80
    default_backend portico
backend portico
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check port 9901 inter 300ms fall 1 rise 2 send-proxy-v2
    server portico1 ${ADDR[p1]}:8081
    server portico2 ${ADDR[p2]}:8081
EOT
ip netns exec "$P-l4" haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
PIDS+=($!); disown

get() { inns client curl -s -m 5 -o /dev/null -w '%{http_code}' "$@" "http://$VIP/echo"; }
wait_ok() {
  for _ in $(seq 1 100); do [ "$(get)" = 200 ] && return 0; sleep 0.1; done
  fail "the virtual address never answered; haproxy: $(tail -n 5 "$TMP/haproxy.log")"
}
wait_ok
sleep 1   # both instances up in HAProxy's view (rise 2)

# 1. Steady load spreads over both instances.
for _ in $(seq 1 60); do [ "$(get)" = 200 ] || fail "steady load: a request failed"; done
n1=$(grep -c '"status":200' "$TMP/p1-access.log" || true)
n2=$(grep -c '"status":200' "$TMP/p2-access.log" || true)
say "steady load: portico1 served $n1, portico2 served $n2"
[ "$n1" -gt 5 ] && [ "$n2" -gt 5 ] || fail "load not spread over both instances"

# 2. The member sees the real client address (PROXY v2 -> X-Forwarded-For).
body=$(inns client curl -s -m 5 "http://$VIP/echo")
echo "$body" | grep -q "\"x-forwarded-for\",\"${ADDR[client]}\"" || fail "member did not see the client address: $body"
grep -q "\"client\":\"${ADDR[client]}\"" "$TMP/p1-access.log" "$TMP/p2-access.log" || fail "access log lacks the client address"
say "the member and the access logs see the client address ${ADDR[client]}"

# 3. An affinity cookie from one instance is honoured through the other.
hdrs=$(inns client curl -s -m 5 -D - -o /dev/null "http://$VIP/echo")
cookie=$(echo "$hdrs" | tr -d '\r' | awk -F': ' 'tolower($1)=="set-cookie"{print $2}' | cut -d';' -f1)
member=$(echo "$hdrs" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend"{print $2}')
[ -n "$cookie" ] || fail "no affinity cookie"
for _ in $(seq 1 10); do
  got=$(inns client curl -s -m 5 -D - -o /dev/null -H "Cookie: $cookie" "http://$VIP/echo" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend"{print $2}')
  [ "$got" = "$member" ] || fail "affinity broken: $got instead of $member"
done
say "affinity: 10 requests with $cookie all reached $member (through both instances)"

# 4. Graceful drain (SIGTERM) under load: zero failed requests.
load() {  # seconds -> prints failures
  local end=$((SECONDS + $1)) failures=0 total=0
  while [ $SECONDS -lt $end ]; do
    total=$((total + 1))
    [ "$(get)" = 200 ] || failures=$((failures + 1))
  done
  echo "$failures $total"
}
load 4 >"$TMP/drain.out" &
LP=$!
sleep 1
kill -TERM "$PP1"
wait $LP
read -r f t <"$TMP/drain.out"
kill -0 "$PP1" 2>/dev/null && fail "portico1 still runs 3 s after SIGTERM"
say "SIGTERM on portico1 under load: $f failed of $t"
[ "$f" = 0 ] || fail "requests failed during a graceful drain"

# Bring portico1 back, then kill portico2 hard.
PP1=$(start_portico p1); PIDS+=($PP1)
sleep 1.5
load 4 >"$TMP/kill.out" &
LP=$!
sleep 1
kill -KILL "$PP2"
wait $LP
read -r f t <"$TMP/kill.out"
kill -0 "$PP2" 2>/dev/null && fail "portico2 survived SIGKILL"
say "SIGKILL on portico2 under load: $f failed of $t (only requests in flight on it may fail)"
[ "$f" -le 2 ] || fail "more than the in-flight requests failed"
for _ in 1 2 3; do [ "$(get)" = 200 ] || fail "new requests do not succeed after the kill"; done
say "PASS"
echo "ha: 5 passed, 0 failed"
