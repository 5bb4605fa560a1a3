#!/usr/bin/env bash
# A keepalived (VRRP) pair of Portico instances, in network namespaces this script creates
# and removes:
#   client ── bridge ── p1 (keepalived + portico), p2 (keepalived + portico) ── member
# Both instances run the same portico.toml, whose listener binds the virtual address
# (net.ipv4.ip_nonlocal_bind=1 in p1 and p2), and keepalived renders
# contrib/keepalived/active-passive.conf. A paced load loop (curl) runs against the virtual
# address during each scenario; every request's start, end and status are logged and counted:
#   1. kill -9 of the master's Portico: vrrp_script fails, the address moves, new requests
#      succeed within 5 s (failed requests and seconds from the kill to the first success);
#   2. the old master's Portico comes back: nopreempt, the address stays, nothing fails;
#   3. kill -9 of the master's keepalived: the backup takes the address after 3 missed adverts;
#   4. planned drain (SIGTERM, drain_delay = 3s): portico health non-zero at once, the address
#      moves while the old master still accepts, no request started after the move fails;
#      two long polls open across the move show what becomes of established connections;
#   5. contrib/keepalived/active-active.conf: each box master of one address, kill -9 moves
#      both to the survivor, the address goes home after rise + preempt_delay.
# Set VRRP_KEEP=1 to keep the logs (the temporary folder is printed).
# Usage: tests/ha/keepalived.sh [path/to/portico]   (needs root, iproute2, keepalived, curl)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/debug/portico}
say() { printf '[vrrp] %s\n' "$*"; }
fail() {
  printf '[vrrp] FAIL: %s\n' "$*"
  for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done
  exit 1
}

if [ "$(id -u)" != 0 ] || ! ip netns add vrrp-probe 2>/dev/null; then
  say "SKIPPED: needs root and ip netns"; exit 0
fi
ip netns del vrrp-probe
command -v keepalived >/dev/null || { echo "[vrrp] FAIL: keepalived is not installed (apt-get install keepalived)"; exit 1; }
[ -x "$BIN" ] || { echo "[vrrp] FAIL: no portico binary at $BIN (cargo build first)"; exit 1; }

P=vr$$
TMP=$(mktemp -d)
chmod 700 "$TMP"
PIDS=()
LOOPS=()
cleanup() {
  for pid in "${LOOPS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}" $(cat "$TMP"/*.pid 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  for n in net client p1 p2 m1; do ip netns del "$P-$n" 2>/dev/null || true; done
  if [ -n "${VRRP_KEEP:-}" ]; then echo "[vrrp] kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
# keepalived's script security wants the script and every directory above it root-only.
install -m 755 "$BIN" "$TMP/portico"
BIN=$TMP/portico

ip netns add "$P-net"
ip -n "$P-net" link add br0 type bridge
ip -n "$P-net" link set br0 up
declare -A ADDR=([client]=10.78.0.10 [p1]=10.78.0.31 [p2]=10.78.0.32 [m1]=10.78.0.41)
VIP=10.78.0.100
i=0
for h in client p1 p2 m1; do
  i=$((i + 1))
  v="vrr$(( $$ % 10000 ))x$i"
  ip netns add "$P-$h"
  ip link add "$v" type veth peer name eth0 netns "$P-$h"
  ip link set "$v" netns "$P-net"
  ip -n "$P-net" link set "$v" master br0 up
  ip -n "$P-$h" addr add "${ADDR[$h]}/24" dev eth0
  ip -n "$P-$h" link set eth0 up
  ip -n "$P-$h" link set lo up
done
inns() { local h=$1; shift; ip netns exec "$P-$h" "$@"; }
now() { echo "$EPOCHREALTIME"; }
vip_on() { ip -n "$P-$1" -4 -o addr show dev eth0 | grep -q " ${2:-$VIP}/"; }
holder() {  # holder [ADDRESS] -> p1, p2, p1p2 or none
  local h=""
  for p in p1 p2; do vip_on $p "${1:-$VIP}" && h="$h$p"; done
  echo "${h:-none}"
}
wait_holder() {  # wait_holder p2 SECONDS [ADDRESS]
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do [ "$(holder "${3:-$VIP}")" = "$1" ] && return 0; sleep 0.05; done
  fail "${3:-$VIP} is on '$(holder "${3:-$VIP}")', expected $1"
}

ip netns exec "$P-m1" "$BIN" member --listen "${ADDR[m1]}:8080" --name m1 >"$TMP/m1.log" 2>&1 &
PIDS+=($!)

# One config, the same bytes on both instances (each in its own folder for its access log).
for p in p1 p2; do
  mkdir -p "$TMP/$p"
  cat >"$TMP/$p/portico.toml" <<EOT
drain_delay = "3s"
shutdown_timeout = "5s"
[[listener]]
bind = "$VIP:80"
[admin]
bind = "0.0.0.0:9901"
[log]
access_log = "access.log"
access_format = "json"
[[farm]]
name = "pool"
members = [ { address = "${ADDR[m1]}" } ]
http_port = 8080
ssl_offload = true
health = { url = "/echo", interval = "1s", timeout = "1s" }
[[rule]]
name = "pool"
action = { route = "pool", scheme = "http" }
EOT
done

# The listener is on an address the box does not have yet: without ip_nonlocal_bind, no start.
if inns p2 timeout 5 "$BIN" run --config "$TMP/p2/portico.toml" >"$TMP/nobind.log" 2>&1; then
  fail "portico started on an absent address without ip_nonlocal_bind"
fi
grep -q "cannot listen on $VIP:80" "$TMP/nobind.log" || fail "no bind error: $(cat "$TMP/nobind.log")"
say "without net.ipv4.ip_nonlocal_bind the backup cannot bind $VIP:80: $(grep -o 'cannot listen.*' "$TMP/nobind.log" | head -n 1)"
for p in p1 p2; do inns $p sysctl -qw net.ipv4.ip_nonlocal_bind=1; done

start_portico() {
  # Not through inns: $! must be Portico itself (a backgrounded function is a subshell).
  ip netns exec "$P-$1" "$BIN" run --config "$TMP/$1/portico.toml" >>"$TMP/$1-portico.log" 2>&1 &
  echo $! >"$TMP/$1-portico.pid"
}
health() { inns "$1" "$BIN" health --config "$TMP/$1/portico.toml"; }

# keepalived: contrib/keepalived/active-passive.conf with this lab's names and addresses,
# plus a notify script that timestamps every state change.
cat >"$TMP/notify.sh" <<EOT
#!/bin/sh
echo "\$(date +%s.%N) \$1 \$4" >> "$TMP/events"
EOT
chmod 755 "$TMP/notify.sh"
render() {  # render p1|p2
  local me=$1 other prio src peer
  if [ "$me" = p1 ]; then other=p2 prio=150; else other=p1 prio=100; fi
  src=${ADDR[$me]} peer=${ADDR[$other]}
  sed -e "s|router_id portico01|router_id $P-$me|" \
      -e "s|/usr/local/bin/portico health --config /etc/portico/portico.toml|$BIN health --config $TMP/$me/portico.toml|" \
      -e "s|priority 150 |priority $prio |" \
      -e "s|unicast_src_ip 10.0.0.31 |unicast_src_ip $src |" \
      -e "s|^        10.0.0.32 |        $peer |" \
      -e "s|203.0.113.10/24 dev eth0|$VIP/24 dev eth0|" \
      -e "s|virtual_router_id 51 |virtual_router_id $(( 100 + $$ % 100 )) |" \
      -e "s|^    advert_int 1|    advert_int 1\n    notify \"$TMP/notify.sh $me\"|" \
      contrib/keepalived/active-passive.conf >"$TMP/$me-keepalived.conf"
  grep -q "priority $prio" "$TMP/$me-keepalived.conf" && grep -q "$peer" "$TMP/$me-keepalived.conf" \
    && grep -q "$VIP/24" "$TMP/$me-keepalived.conf" || fail "could not render contrib/keepalived/active-passive.conf"
}
start_keepalived() {
  ip netns exec "$P-$1" keepalived -n -l -D --vrrp -f "$TMP/$1-keepalived.conf" \
    -p "$TMP/$1-ka-main.pid" -r "$TMP/$1-ka-vrrp.pid" >>"$TMP/$1-keepalived.log" 2>&1 &
  echo $! >"$TMP/$1-keepalived.pid"
}
render p1; render p2

# p1 first, so it is master; then p2 joins as backup.
start_portico p1
start_keepalived p1
wait_holder p1 10
start_portico p2
start_keepalived p2
for _ in $(seq 1 100); do health p2 >/dev/null 2>&1 && break; sleep 0.1; done
health p2 >/dev/null || fail "p2 never became ready: $(health p2)"
sleep 2
[ "$(holder)" = p1 ] || fail "the address moved while p2 joined: $(holder)"
say "p1 holds $VIP; p2 is backup; portico health on p2: $(health p2)"

# The same config, shown as the same digest by both instances.
d1=$(inns client curl -s -m 3 "http://${ADDR[p1]}:9901/metrics" | grep -o 'portico_config_info{digest="[0-9a-f]*"}')
d2=$(inns client curl -s -m 3 "http://${ADDR[p2]}:9901/metrics" | grep -o 'portico_config_info{digest="[0-9a-f]*"}')
[ -n "$d1" ] && [ "$d1" = "$d2" ] || fail "config digests differ or are missing: '$d1' vs '$d2'"
sum=$(sha256sum "$TMP/p1/portico.toml" | cut -d' ' -f1)
[ "$d1" = "portico_config_info{digest=\"$sum\"}" ] || fail "digest $d1 is not sha256sum $sum"
say "both instances report $d1 (= sha256sum of the file)"

# Load: two loops, one request every 100 ms each, against the virtual address. One line per
# request: start end http_code (000 = no HTTP answer).
load_start() {  # load_start NAME SECONDS
  local n
  for n in 1 2; do
    (
      end=$((SECONDS + $2))
      [ "$n" = 2 ] && sleep 0.05
      while [ $SECONDS -lt $end ]; do
        s=$EPOCHREALTIME
        c=$(inns client curl -s -o /dev/null -m 4 -w '%{http_code}' "http://$VIP/echo" || true)
        echo "$s $EPOCHREALTIME ${c:-000}"
        sleep 0.1
      done
    ) >"$TMP/$1.$n.load" &
    LOOPS+=($!)
  done
}
load_wait() { for l in "${LOOPS[@]}"; do wait "$l"; done; LOOPS=(); cat "$TMP/$1".*.load | sort -n >"$TMP/$1.load"; }
# stats NAME T0: "total failed window" -- window = seconds from T0 to the end of the first
# successful request that started at or after T0.
stats() {
  awk -v t0="$2" '{ n++; if ($3 != 200) f++; if ($3 == 200 && $1 >= t0 && (w == "" || $2 < w)) w = $2 }
    END { printf "%d %d %.2f\n", n, f, (w == "" ? -1 : w - t0) }' "$TMP/$1.load"
}
event_time() {  # event_time HOST STATE AFTER -> first timestamp of HOST entering STATE after AFTER
  awk -v h="$1" -v s="$2" -v a="$3" '$2 == h && $3 == s && $1 >= a { print $1; exit }' "$TMP/events"
}

# Steady: everything succeeds.
load_start steady 2; load_wait steady
read -r n f _ < <(stats steady 0)
[ "$f" = 0 ] || fail "steady load: $f of $n failed"
say "steady load through $VIP: $n requests, 0 failed"
RESULTS=()

# 1. kill -9 of the master's Portico.
load_start kill9 7
sleep 1.5
k=$(now); kill -9 "$(cat "$TMP/p1-portico.pid")"
load_wait kill9
read -r n f w < <(stats kill9 "$k")
m=$(event_time p2 MASTER "$k"); mv=$(awk -v a="$m" -v b="$k" 'BEGIN { printf "%.2f", a - b }')
[ "$(holder)" = p2 ] || fail "after kill -9 of p1's portico the address is on $(holder)"
awk -v w="$w" 'BEGIN { exit !(w >= 0 && w <= 5) }' || fail "kill -9 portico: no success within 5 s (window $w)"
say "kill -9 of the master's Portico: address on p2 after ${mv} s, first success after ${w} s, $f of $n requests failed"
RESULTS+=("kill -9 portico      | ${mv} s | ${w} s | $f of $n")

# 2. The old master comes back: nopreempt, the address stays on p2, nothing fails.
load_start back1 6
sleep 0.5
b=$(now); start_portico p1
for _ in $(seq 1 50); do health p1 >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3.5   # rise 2: p1 leaves FAULT, becomes BACKUP
load_wait back1
read -r n f _ < <(stats back1 "$b")
grep -q "p1 BACKUP" "$TMP/events" || fail "p1 never became BACKUP again"
[ "$(holder)" = p2 ] || fail "nopreempt: the address moved back to $(holder)"
[ "$f" = 0 ] || fail "the old master's return failed $f requests"
say "p1's Portico back: p1 is BACKUP, the address stays on p2 (nopreempt), $f of $n failed"
RESULTS+=("old master returns   | stays (nopreempt) | - | $f of $n")

# 3. kill -9 of the master's keepalived (p2): its address stays configured there, but p1
#    hears no advert for 3 x advert_int and takes over; its gratuitous ARP moves the clients.
load_start kakill 8
sleep 1.5
# The VRRP child first: killed after its parent it could still say goodbye (priority 0).
k=$(now); kill -9 "$(cat "$TMP/p2-ka-vrrp.pid")" "$(cat "$TMP/p2-keepalived.pid")"
load_wait kakill
[ "$(holder)" = p1p2 ] || fail "a crashed keepalived should leave its address behind; it is on $(holder)"
read -r n f w < <(stats kakill "$k")
m=$(event_time p1 MASTER "$k"); [ -n "$m" ] || fail "p1 never became master after p2's keepalived died"
mv=$(awk -v a="$m" -v b="$k" 'BEGIN { printf "%.2f", a - b }')
awk -v w="$w" 'BEGIN { exit !(w >= 0 && w <= 5) }' || fail "keepalived kill: no success within 5 s"
say "kill -9 of the master's keepalived: p1 master after ${mv} s, first success after ${w} s, $f of $n requests failed (address left on: $(holder))"
RESULTS+=("kill -9 keepalived   | ${mv} s | ${w} s | $f of $n")
# A restarted keepalived starts BACKUP and removes the address it left behind.
start_keepalived p2
for _ in $(seq 1 60); do [ "$(holder)" = p1 ] && break; sleep 0.1; done
[ "$(holder)" = p1 ] || fail "after p2's keepalived restarted the address is on $(holder)"
sleep 1
say "p2's keepalived restarted: BACKUP, the stale address removed, p1 holds $VIP"

# 4. Planned drain of the master (p1): SIGTERM with drain_delay = 3s.
inns client curl -s -o /dev/null -m 12 --keepalive-time 1 -w '%{http_code}' \
  "http://$VIP/long-poll?secs=30" >"$TMP/poll-ka.out" 2>&1 &
POLL_KA=$!
inns client curl -s -o /dev/null -m 12 --no-keepalive -w '%{http_code}' \
  "http://$VIP/long-poll?secs=30" >"$TMP/poll-quiet.out" 2>&1 &
POLL_QUIET=$!
load_start drain 8
sleep 1.5
k=$(now); kill -TERM "$(cat "$TMP/p1-portico.pid")"
# "At once": the first query after the signal that the process has handled. Poll for it.
hs=""
for _ in $(seq 1 50); do
  hs=$(health p1 || true); hc=$(now)
  case "$hs" in "not ready: draining"*) break ;; esac
  sleep 0.01
done
case "$hs" in "not ready: draining"*) ;; *) fail "portico health during drain_delay said: $hs" ;; esac
hd=$(awk -v a="$hc" -v b="$k" 'BEGIN { printf "%.2f", a - b }')
awk -v d="$hd" 'BEGIN { exit !(d < 0.5) }' || fail "portico health took ${hd} s to say not ready"
say "SIGTERM on p1: portico health non-zero ${hd} s later: $hs"
set +e
wait $POLL_KA; ka_rc=$?; ka_end=$(now)
wait $POLL_QUIET; quiet_rc=$?; quiet_end=$(now)
set -e
load_wait drain
f1=$(event_time p1 FAULT "$k"); m=$(event_time p2 MASTER "$k")
[ -n "$f1" ] && [ -n "$m" ] || fail "the drain did not move the address (p1 FAULT '$f1', p2 MASTER '$m')"
read -r n f w < <(stats drain "$k")
late=$(awk -v m="$m" '$1 >= m && $3 != 200' "$TMP/drain.load" | wc -l)
inflight=$(awk -v a="$f1" -v m="$m" '$1 < m && $2 > a' "$TMP/drain.load" | wc -l)
mv=$(awk -v a="$m" -v b="$k" 'BEGIN { printf "%.2f", a - b }')
gap=$(awk -v a="$m" -v b="$f1" 'BEGIN { printf "%.2f", a - b }')
[ "$late" = 0 ] || fail "drain: $late request(s) that started after the move failed"
[ "$f" -le "$inflight" ] || fail "drain: $f failed, more than the $inflight in flight at the move"
say "planned drain: p1 gave the address up $(awk -v a="$f1" -v b="$k" 'BEGIN { printf "%.2f", a - b }') s after SIGTERM, p2 master ${gap} s later (${mv} s); $f of $n failed ($inflight in flight across the move, 0 of those started after it)"
RESULTS+=("planned drain        | ${mv} s | ${w} s | $f of $n (in flight at the move: $inflight)")
ka_after=$(awk -v a="$ka_end" -v b="$m" 'BEGIN { printf "%.1f", a - b }')
quiet_after=$(awk -v a="$quiet_end" -v b="$m" 'BEGIN { printf "%.1f", a - b }')
say "long poll with TCP keepalive (1 s) open across the move: curl exit $ka_rc ($( [ $ka_rc = 56 ] && echo 'connection reset by the new master' || echo "code $(cat "$TMP/poll-ka.out")")), ${ka_after} s after the move"
say "long poll without keepalive open across the move: curl exit $quiet_rc ($( [ $quiet_rc = 28 ] && echo 'no answer at all until its own timeout' || echo "code $(cat "$TMP/poll-quiet.out")")), ${quiet_after} s after the move"
[ "$ka_rc" != 0 ] || fail "a long poll survived the move of the address (unexpected for VRRP alone)"
POLL_RESULT="keepalive: exit $ka_rc after ${ka_after} s; quiet: exit $quiet_rc after ${quiet_after} s"

# p1 exits by itself once drained; bring it back (nopreempt: the address stays on p2).
for _ in $(seq 1 100); do kill -0 "$(cat "$TMP/p1-portico.pid")" 2>/dev/null || break; sleep 0.1; done
kill -0 "$(cat "$TMP/p1-portico.pid")" 2>/dev/null && fail "p1 did not exit after its drain"
start_portico p1
for _ in $(seq 1 50); do health p1 >/dev/null 2>&1 && break; sleep 0.1; done
health p1 >/dev/null || fail "p1 not ready after restart: $(health p1)"
sleep 2.5
[ "$(holder)" = p2 ] || fail "the address moved when p1 came back: $(holder)"
say "p1 back after its drain: BACKUP, the address stays on p2"

# 5. contrib/keepalived/active-active.conf: two addresses, each box master of one; preempt
#    (preempt_delay cut from 60 s to 3 s here). The listeners of both boxes now bind both
#    addresses: a reload binds the second one while the box does not have it.
for p in p1 p2; do kill -TERM "$(cat "$TMP/$p-keepalived.pid")"; done
for p in p1 p2; do
  while kill -0 "$(cat "$TMP/$p-keepalived.pid")" 2>/dev/null; do sleep 0.1; done
done
VIP2=10.78.0.101
for p in p1 p2; do
  sed -i "s|^bind = \"$VIP:80\"|bind = \"$VIP:80\"\n[[listener]]\nbind = \"$VIP2:80\"|" "$TMP/$p/portico.toml"
  kill -HUP "$(cat "$TMP/$p-portico.pid")"
done
for p in p1 p2; do
  for _ in $(seq 1 50); do grep -q "listener added" "$TMP/$p-portico.log" && break; sleep 0.1; done
  grep -q "listener added" "$TMP/$p-portico.log" || fail "$p did not bind $VIP2 on reload"
done
render_aa() {
  local me=$1 other src peer
  if [ "$me" = p1 ]; then other=p2; else other=p1; fi
  src=${ADDR[$me]} peer=${ADDR[$other]}
  sed -e "s|router_id portico01|router_id $P-$me|" \
      -e "s|/usr/local/bin/portico health --config /etc/portico/portico.toml|$BIN health --config $TMP/$me/portico.toml|" \
      -e "s|unicast_src_ip 10.0.0.31 |unicast_src_ip $src |" \
      -e "s|^        10.0.0.32 |        $peer |" \
      -e "s|203.0.113.10/24 dev eth0|$VIP/24 dev eth0|" \
      -e "s|203.0.113.11/24 dev eth0|$VIP2/24 dev eth0|" \
      -e "s|virtual_router_id 51|virtual_router_id $(( 100 + $$ % 100 ))|" \
      -e "s|virtual_router_id 52|virtual_router_id $(( 200 + $$ % 50 ))|" \
      -e "s|preempt_delay 60|preempt_delay 3|" \
      -e "s|^    advert_int 1|    advert_int 1\n    notify \"$TMP/notify.sh $me\"|" \
      contrib/keepalived/active-active.conf >"$TMP/$me-keepalived.conf"
  if [ "$me" = p2 ]; then  # the lines marked "portico02:"
    awk '$1 == "priority" { $2 = ($2 == 150 ? 100 : 150) } { print }' \
      "$TMP/$me-keepalived.conf" >"$TMP/$me-aa.tmp" && mv "$TMP/$me-aa.tmp" "$TMP/$me-keepalived.conf"
  fi
  [ "$(grep -c "$VIP2/24\|$VIP/24" "$TMP/$me-keepalived.conf")" = 2 ] || fail "could not render active-active.conf"
}
render_aa p1; render_aa p2
start_keepalived p1; start_keepalived p2
wait_holder p1 10 "$VIP"; wait_holder p2 10 "$VIP2"
for a in $VIP $VIP2; do
  [ "$(inns client curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$a/echo")" = 200 ] || fail "active/active: $a does not answer"
done
say "active/active: p1 holds $VIP, p2 holds $VIP2, both answer"
k=$(now); kill -9 "$(cat "$TMP/p1-portico.pid")"
wait_holder p2 5 "$VIP"
aa_move=$(awk -v a="$(now)" -v b="$k" 'BEGIN { printf "%.2f", a - b }')
[ "$(holder "$VIP2")" = p2 ] || fail "active/active: $VIP2 left p2"
[ "$(inns client curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$VIP/echo")" = 200 ] || fail "active/active: $VIP does not answer on p2"
say "active/active: kill -9 of p1's Portico: both addresses on p2 after ${aa_move} s"
b=$(now); start_portico p1
wait_holder p1 12 "$VIP"
aa_back=$(awk -v a="$(now)" -v b="$b" 'BEGIN { printf "%.2f", a - b }')
[ "$(holder "$VIP2")" = p2 ] || fail "active/active: $VIP2 left p2 when p1 came back"
say "active/active: p1's Portico back: $VIP home on p1 ${aa_back} s after the restart (rise 2 + preempt_delay 3 s)"
RESULTS+=("active/active kill -9 portico | ${aa_move} s | - | - ; address home again ${aa_back} s after restart")

say "figures (address moved after | first success after | failed requests):"
for r in "${RESULTS[@]}"; do say "  $r"; done
say "  long polls across the move: $POLL_RESULT"
say "PASS (total ${SECONDS} s)"
echo "vrrp: 8 passed, 0 failed"
