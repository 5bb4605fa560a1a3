#!/usr/bin/env bash
# TLS policy check: runs Debian's testssl.sh against a Portico TLS listener and fails unless
# only TLS 1.2 and 1.3 are offered and no vulnerability is reported.
#   bench/testssl.sh            # builds release Portico, generates a certificate, runs testssl
#   PORTICO=path/to/portico bench/testssl.sh
# Output: the testssl log and JSON in $OUT (default: a temp folder, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v testssl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq testssl.sh
fi
command -v openssl >/dev/null || { echo "openssl is needed" >&2; exit 2; }

if [ -z "${PORTICO:-}" ]; then
  cargo build --release --quiet
  PORTICO="${CARGO_TARGET_DIR:-target}/release/portico"
fi

OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
ip=127.0.0.1
port="${PORT:-18443}"
name=tls.portico.test

openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" \
  -addext "subjectAltName=DNS:$name" -keyout "$OUT/cert.key" -out "$OUT/cert.pem" 2>/dev/null
cat >"$OUT/portico.toml" <<TOML
[[listener]]
bind = "$ip:$port"
tls = { certificates = [ { cert = "cert.pem", key = "cert.key" } ] }

[[farm]]
name = "nowhere"
members = [ { address = "127.0.0.1" } ]
http_port = 9
https_port = 9

[[rule]]
name = "all"
match = ".*"
action = { route = "nowhere" }
TOML

"$PORTICO" run --config "$OUT/portico.toml" 2>"$OUT/portico.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$OUT/portico.log"; exit 1; }
  sleep 0.1
done

rm -f "$OUT/testssl.json"
testssl --quiet --warnings off --color 0 --ip "$ip" --jsonfile "$OUT/testssl.json" \
  --protocols --vulnerable --server-defaults --std \
  "https://$name:$port/" >"$OUT/testssl.log" 2>&1 || true

python3 - "$OUT/testssl.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
problems = []
protocols = {"SSLv2", "SSLv3", "TLS1", "TLS1_1"}
vulns = {"heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
         "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
         "LOGJAM", "LOGJAM-common_primes", "BEAST_CBC_TLS1", "BEAST", "LUCKY13", "RC4",
         "winshock", "opossum", "GREASE"}
seen = {}
for f in findings:
    i, sev, text = f.get("id", ""), f.get("severity", ""), f.get("finding", "")
    seen[i] = (sev, text)
    if i in protocols and "not offered" not in text:
        problems.append(f"{i} is offered: {text}")
    if i in ("TLS1_2", "TLS1_3") and not text.startswith("offered"):
        problems.append(f"{i} is not offered: {text}")
    if sev in ("LOW", "MEDIUM", "HIGH", "CRITICAL") and (i in vulns or i.startswith("cipher")
                                                          or i in protocols):
        problems.append(f"{i} ({sev}): {text}")
    # The certificate is generated for this run (self-signed, no CRL/OCSP): findings about it
    # say nothing about Portico, so they are listed but do not fail the check.
    if i.startswith("cert_") or i in ("OCSP_stapling", "DNS_CAArecord", "trust"):
        continue
    if sev in ("HIGH", "CRITICAL"):
        problems.append(f"{i} ({sev}): {text}")
for i in ("TLS1_2", "TLS1_3"):
    if i not in seen:
        problems.append(f"testssl reported nothing for {i}")
print("protocols:", ", ".join(f"{p}={seen.get(p, ('', '?'))[1]}" for p in
      ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]))
checked = [v for v in sorted(vulns) if v in seen]
print("vulnerability checks:", ", ".join(f"{v}={seen[v][0]}" for v in checked))
if problems:
    print("testssl found problems:")
    for p in sorted(set(problems)):
        print("  -", p)
    sys.exit(1)
notes = sorted(f"{f['id']} ({f['severity']}): {f['finding']}" for f in findings
               if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN"))
if notes:
    print("other findings (test certificate, informational):")
    for n in notes:
        print("  -", n)
print("testssl: only TLS 1.2/1.3 offered, no vulnerability reported")
PY
status=$?
echo "testssl output: $OUT/testssl.log, $OUT/testssl.json"
exit $status
