#!/usr/bin/env python3
"""The hot path, side by side in one run: the same load straight to the member ("direct",
the limit), through Portico and through nginx, for plain HTTP, HTTPS and h2 keep-alive with
1 KiB responses; and, Portico only, a config with 1,000 host rules ahead of the matching
one against a one-rule config, and `portico validate` of 10,000 rules.

Each row: requests/s, the proxy's CPU per request (user + system of the proxy process
tree, so a busy machine does not skew it), and the connections the proxy opened to the
member during the scenario (the member counts its accepts). Writes bench/hotpath.md.

    sudo python3 bench/hotpath.py                 # 3 rounds of 8 s per scenario and target
    DURATION=4 ROUNDS=1 python3 bench/hotpath.py  # quick

Needs nginx, wrk, h2load (nghttp2-client), openssl; builds `cargo build --release` and
the bench member (`--example bench-member`). All traffic stays on 127.0.0.1.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True
BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from longpoll import children_of, rss_kib  # noqa: E402

DURATION = int(os.environ.get("DURATION", "8"))
HELD = int(os.environ.get("HELD", "2000"))  # long polls held at once, per proxy
ROUNDS = int(os.environ.get("ROUNDS", "3"))
# SCENARIOS=http,https,h2: run only these (quick iterations); HELD=0 skips the held long polls.
SCENARIOS = [s for s in os.environ.get("SCENARIOS", "http,https,h2,rules,farm").split(",") if s]
# REQUEST=browser: every request carries what a browser sends to OWA (1.3 KB of fields, most
# of it cookies) instead of wrk's and h2load's few bytes. bench/instructions.sh sends the same.
BROWSER_FIELDS = [
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8",
    "Accept-Language: en-GB,en;q=0.9,de;q=0.8",
    "Accept-Encoding: gzip, deflate, br, zstd",
    "Referer: https://app.contoso.com/owa/",
    "Cookie: ClientId=" + "A" * 32 + "; X-BackEndCookie=S-1-5-21-" + "7" * 60 + "; cadata=" + "c" * 600
    + "; cadataTTL=" + "t" * 40 + "; UC=" + "u" * 32 + "; X-OWA-CANARY=" + "k" * 76,
]
EXTRA_FIELDS = BROWSER_FIELDS if os.environ.get("REQUEST") == "browser" else []
# wrk's and h2load's arguments for them.
FIELD_ARGS = [a for f in EXTRA_FIELDS for a in ("-H", f)]
WORKERS = 2
# PIN=1: every proxy on CPU 0 and the member and the load generator on CPU 1 (taskset), so
# that a proxy is never preempted by its own client or member on the CPU it runs on. Then
# requests/s is the proxy's own CPU cost; by default all share both CPUs, as the targets say.
PIN = os.environ.get("PIN") == "1"
BASE = int(os.environ.get("BASE_PORT", "24000"))
PORTS = {
    "member-http": BASE,
    "member-https": BASE + 1,
    "portico-http": BASE + 10,
    "portico-https": BASE + 11,
    "nginx-http": BASE + 20,
    "nginx-https": BASE + 21,
    "rules1": BASE + 30,
    "rules1000": BASE + 31,
    "farm3": BASE + 32,
    "haproxy-http": BASE + 40,
    "haproxy-https": BASE + 41,
    "haproxy-l4": BASE + 42,
    "member-b": BASE + 2,
    "member-c": BASE + 3,
}
HOST = "app.contoso.com"
PROCS = []


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def cpu_seconds(pid):
    """(user, kernel) CPU seconds of the process tree."""
    tick = os.sysconf("SC_CLK_TCK")
    user = kernel = 0
    for p in children_of([pid]):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            kernel += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / tick, kernel / tick


def pinned(cmd, cpu):
    """`cmd` on CPU `cpu` when PIN=1, else as it is."""
    return ["taskset", "-c", str(cpu), *cmd] if PIN else cmd


def start(cmd, log_path):
    f = open(log_path, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    PROCS.append(p)
    return p


def wait_port(port, proc):
    import socket

    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"process for port {port} exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def member_accepts():
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['member-http']}/connections") as r:
        http = int(r.read())
    return http


def pki(d):
    def run(c):
        subprocess.run(c, shell=True, check=True, cwd=d, stderr=subprocess.DEVNULL)

    for name, subj in (("internal-ca", "/CN=Bench Internal CA"), ("public-ca", "/CN=Bench Public CA")):
        run(
            f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
            f"-keyout {name}.key -out {name}.pem -subj '{subj}' "
            f"-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        )
    for name, ca, san in (("member", "internal-ca", "DNS:fe01.contoso.local"), ("public", "public-ca", "DNS:*.contoso.com")):
        run(f"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key -out {name}.csr -subj /CN=x")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName={san}\n")
        run(
            f"openssl x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial "
            f"-days 2 -extfile {name}.ext -out {name}.crt"
        )
        run(f"cat {name}.crt {ca}.pem > {name}.pem")


def portico_config(d, http_port, https_port, host_rules=0, farm_of_three=False):
    rules = []
    for i in range(host_rules):
        rules.append(
            f'[[rule]]\nname = "tenant{i}"\nmatch = ".*"\n'
            f'conditions = [ {{ input = "{{HTTP_HOST}}", pattern = "^tenant{i}\\\\.example\\\\.com$" }} ]\n'
            f'action = {{ route = "fe" }}\nstop = true\n'
        )
    listeners = f'[[listener]]\nbind = "127.0.0.1:{http_port}"\n'
    if https_port:
        listeners += (
            f'[[listener]]\nbind = "127.0.0.1:{https_port}"\n'
            f'tls = {{ certificates = [ {{ cert = "{d}/public.pem", key = "{d}/public.key" }} ] }}\n'
        )
    members = '{ address = "fe01.contoso.local" }'
    if farm_of_three:
        members += "".join(
            f', {{ address = "127.0.0.1", http_port = {PORTS[m]} }}' for m in ("member-b", "member-c")
        )
    return f"""workers = {WORKERS}
{listeners}
[resolve]
"fe01.contoso.local" = ["127.0.0.1"]
[upstream]
ca = "{d}/internal-ca.pem"
[[farm]]
name = "fe"
members = [ {members} ]
http_port = {PORTS['member-http']}
https_port = {PORTS['member-https']}
timeout = "960s"
{''.join(rules)}
[[rule]]
name = "everything"
action = {{ route = "fe" }}
stop = true
"""


def nginx_config(d):
    return f"""worker_processes {WORKERS};
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    upstream fe_http {{ server 127.0.0.1:{PORTS['member-http']}; keepalive 64; }}
    upstream fe_https {{ server 127.0.0.1:{PORTS['member-https']}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{PORTS['nginx-http']};
        location / {{ proxy_pass http://fe_http; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}
    }}
    server {{
        listen 127.0.0.1:{PORTS['nginx-https']} ssl http2;
        ssl_certificate {d}/public.pem; ssl_certificate_key {d}/public.key;
        location / {{ proxy_pass https://fe_https; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_ssl_name fe01.contoso.local; proxy_ssl_server_name on;
            proxy_ssl_verify on; proxy_ssl_trusted_certificate {d}/internal-ca.pem;
            proxy_ssl_session_reuse on; }}
    }}
}}
"""


# The L4 row's name: HAProxy copying bytes, the cheapest any proxy can be here.
L4 = "haproxy mode tcp (L4 copy: the floor)"


def haproxy_config(d):
    """HAProxy as a second anchor: the same job in its `mode http` (keep-alive to the member,
    re-encrypted on HTTPS), and in `mode tcp` on plain HTTP: a byte copy between one client
    connection and one member connection, with no HTTP work at all. No L7 proxy can be
    cheaper per request than that copy, so its row is the floor of this bench."""
    return f"""global
    nbthread {WORKERS}
    maxconn 4096
defaults
    timeout connect 5s
    timeout client 960s
    timeout server 960s
frontend web
    mode http
    bind 127.0.0.1:{PORTS['haproxy-http']}
    bind 127.0.0.1:{PORTS['haproxy-https']} ssl crt {d}/public-haproxy.pem alpn h2,http/1.1
    option forwardfor
    use_backend fe_https if {{ ssl_fc }}
    default_backend fe_http
backend fe_http
    mode http
    http-reuse always
    server m 127.0.0.1:{PORTS['member-http']}
backend fe_https
    mode http
    http-reuse always
    server m 127.0.0.1:{PORTS['member-https']} ssl verify required ca-file {d}/internal-ca.pem sni str(fe01.contoso.local) verifyhost fe01.contoso.local
frontend l4
    mode tcp
    bind 127.0.0.1:{PORTS['haproxy-l4']}
    default_backend l4
backend l4
    mode tcp
    server m 127.0.0.1:{PORTS['member-http']}
"""


def wrk(url, extra=()):
    out = subprocess.run(
        pinned(["wrk", "-t2", "-c64", f"-d{DURATION}s", *extra, *FIELD_ARGS, url], 1),
        capture_output=True, text=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or errors:
        sys.exit(f"wrk failed on {url}:\n{out}")
    return float(m.group(1)), int(total.group(1))


def h2load(url):
    out = subprocess.run(
        pinned(["h2load", "-c32", "-m10", "-t2", "-D", str(DURATION), *FIELD_ARGS, url], 1),
        capture_output=True, text=True,
    ).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not m or not done or done.group(1) != done.group(2):
        sys.exit(f"h2load failed on {url}:\n{out}")
    return float(m.group(1)), int(done.group(2))


def measure(kind, url, pid):
    c0 = cpu_seconds(pid) if pid else (0, 0)
    a0 = member_accepts()
    rps, n = (h2load(url) if kind == "h2" else wrk(url))
    c1 = cpu_seconds(pid) if pid else (0, 0)
    a1 = member_accepts() - 1  # our own /connections request
    user, kernel = ((c1[0] - c0[0]) * 1e6 / n, (c1[1] - c0[1]) * 1e6 / n)
    return {"rps": rps, "n": n, "cpu_us": user + kernel if pid else None, "kernel_us": kernel, "opened": a1 - a0}


def main():
    for tool in ("nginx", "wrk", "h2load", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install nginx wrk nghttp2-client openssl)")
    log("cargo build --release (portico and the bench member)")
    sh(f"cd {REPO} && cargo build --release -q && cargo build --release -q --example bench-member")
    # PORTICO_BIN: another build to measure (e.g. an earlier commit, for before/after tables).
    portico = os.environ.get("PORTICO_BIN", f"{REPO}/target/release/portico")
    member = f"{REPO}/target/release/examples/bench-member"
    d = tempfile.mkdtemp(prefix="portico-hotpath.")
    os.makedirs(f"{d}/tmp")
    os.chmod(d, 0o755)
    pki(d)
    try:
        # The farm of three's other members are ports of this same one-thread process, so the
        # farm rows compare the proxy's cost of choosing, not one member against three.
        m1 = start(pinned([member, ",".join(f"127.0.0.1:{PORTS[m]}" for m in ("member-http", "member-b", "member-c"))], 1),
                   f"{d}/member-http.log")
        m2 = start(pinned([member, f"127.0.0.1:{PORTS['member-https']}", f"{d}/member.pem", f"{d}/member.key"], 1),
                   f"{d}/member-https.log")
        # One member process serves both: the HTTP one counts accepts; the HTTPS one is a
        # second process, so its accepts are read from its own counter below.
        for name, body in (
            ("portico", portico_config(d, PORTS["portico-http"], PORTS["portico-https"])),
            ("rules1", portico_config(d, PORTS["rules1"], None)),
            ("rules1000", portico_config(d, PORTS["rules1000"], None, host_rules=1000)),
            ("farm3", portico_config(d, PORTS["farm3"], None, farm_of_three=True)),
        ):
            with open(f"{d}/{name}.toml", "w") as f:
                f.write(body)
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(nginx_config(d))
        px = start(pinned([portico, "run", "--config", f"{d}/portico.toml"], 0), f"{d}/portico.log")
        r1 = start(pinned([portico, "run", "--config", f"{d}/rules1.toml"], 0), f"{d}/rules1.log")
        r1000 = start(pinned([portico, "run", "--config", f"{d}/rules1000.toml"], 0), f"{d}/rules1000.log")
        f3 = start(pinned([portico, "run", "--config", f"{d}/farm3.toml"], 0), f"{d}/farm3.log")
        ng = start(pinned(["nginx", "-p", d, "-c", f"{d}/nginx.conf"], 0), f"{d}/nginx.log")
        # HAProxy rows when it is installed (apt-get install haproxy); the table says when not.
        hap = None
        if shutil.which("haproxy"):
            sh(f"cat {d}/public.pem {d}/public.key > {d}/public-haproxy.pem")
            with open(f"{d}/haproxy.cfg", "w") as f:
                f.write(haproxy_config(d))
            hap = start(pinned(["haproxy", "-db", "-f", f"{d}/haproxy.cfg"], 0), f"{d}/haproxy.log")
            for port in (PORTS["haproxy-http"], PORTS["haproxy-https"], PORTS["haproxy-l4"]):
                wait_port(port, hap)
        for port, proc in ((PORTS["member-http"], m1), (PORTS["member-https"], m2), (PORTS["portico-https"], px),
                           (PORTS["rules1000"], r1000), (PORTS["rules1"], r1), (PORTS["nginx-https"], ng),
                           (PORTS["member-b"], m1), (PORTS["member-c"], m1), (PORTS["farm3"], f3)):
            wait_port(port, proc)

        def https_accepts():
            req = urllib.request.Request(f"https://127.0.0.1:{PORTS['member-https']}/connections")
            import ssl

            ctx = ssl.create_default_context(cafile=f"{d}/internal-ca.pem")
            ctx.check_hostname = False
            with urllib.request.urlopen(req, context=ctx) as r:
                return int(r.read())

        global member_accepts
        plain_accepts = member_accepts
        haproxy_rows = {"http": [], "https": []}
        if hap:
            haproxy_rows = {
                "http": [("haproxy", f"http://127.0.0.1:{PORTS['haproxy-http']}/status/200", hap.pid),
                         (L4, f"http://127.0.0.1:{PORTS['haproxy-l4']}/status/200", hap.pid)],
                "https": [("haproxy", f"https://{HOST}:{PORTS['haproxy-https']}/status/200", hap.pid)],
            }
        targets = {
            "http": [("direct", f"http://127.0.0.1:{PORTS['member-http']}/status/200", None),
                     ("portico", f"http://127.0.0.1:{PORTS['portico-http']}/status/200", px.pid),
                     ("nginx", f"http://127.0.0.1:{PORTS['nginx-http']}/status/200", ng.pid)]
            + haproxy_rows["http"],
            "https": [("direct", f"https://127.0.0.1:{PORTS['member-https']}/status/200", None),
                      ("portico", f"https://{HOST}:{PORTS['portico-https']}/status/200", px.pid),
                      ("nginx", f"https://{HOST}:{PORTS['nginx-https']}/status/200", ng.pid)]
            + haproxy_rows["https"],
            "h2": [("portico", f"https://{HOST}:{PORTS['portico-https']}/status/200", px.pid),
                   ("nginx", f"https://{HOST}:{PORTS['nginx-https']}/status/200", ng.pid)],
            "rules": [("1 rule", f"http://127.0.0.1:{PORTS['rules1']}/status/200", r1.pid),
                      ("1,000 host rules ahead", f"http://127.0.0.1:{PORTS['rules1000']}/status/200", r1000.pid)],
            # Portico's cost of choosing: the same load through a farm of one and of three
            # (one member process serves all three ports and counts all their accepts).
            "farm": [("farm of 1", f"http://127.0.0.1:{PORTS['rules1']}/status/200", r1.pid),
                     ("farm of 3", f"http://127.0.0.1:{PORTS['farm3']}/status/200", f3.pid)],
        }
        # wrk and h2load send the URL's host as SNI: resolve app.contoso.com to loopback.
        hosts_line = f"127.0.0.1 {HOST} # portico-hotpath {os.getpid()}\n"
        with open("/etc/hosts") as f:
            had = f.read()
        if HOST not in had:
            with open("/etc/hosts", "a") as f:
                f.write(hosts_line)
        results = {}
        try:
            for scen, rows in targets.items():
                if scen not in SCENARIOS:
                    continue
                member_accepts = https_accepts if scen in ("https", "h2") else plain_accepts
                for r in range(ROUNDS):
                    order = rows if r % 2 == 0 else list(reversed(rows))
                    for name, url, pid in order:
                        log(f"{scen}: {name} (round {r + 1})")
                        res = measure("h2" if scen == "h2" else "wrk", url, pid)
                        results.setdefault((scen, name), []).append(res)
                        time.sleep(1)
        finally:
            if HOST not in had:
                with open("/etc/hosts") as f:
                    lines = [l for l in f if "# portico-hotpath" not in l]
                with open("/etc/hosts", "w") as f:
                    f.writelines(lines)

        held = {}
        for name, port, pid in (("portico", PORTS["portico-https"], px.pid), ("nginx", PORTS["nginx-https"], ng.pid)):
            if HELD == 0:
                break
            log(f"{name}: {HELD} held long polls")
            out = subprocess.run(
                [sys.executable, f"{BENCH}/longpoll.py", "--port", str(port), "--cafile", f"{d}/public-ca.pem",
                 "--pid", str(pid), "--count", str(HELD), "--secs", "60", "--member-port", str(PORTS["member-https"]),
                 "--label", name, "--drain-wait", "2"],
                capture_output=True, text=True,
            )
            import json

            try:
                held[name] = json.loads(out.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                sys.exit(f"longpoll.py failed for {name}:\n{out.stderr[-2000:]}")
        results["held"] = held

        log("portico validate with 10,000 host rules")
        with open(f"{d}/rules10k.toml", "w") as f:
            f.write(portico_config(d, PORTS["rules1"] + 100, None, host_rules=10000))
        t0 = time.time()
        v = subprocess.run(["/usr/bin/time", "-f", "%M", portico, "validate", "--config", f"{d}/rules10k.toml"],
                           capture_output=True, text=True)
        validate_s = time.time() - t0
        validate_kib = int(v.stderr.strip().splitlines()[-1]) if v.returncode == 0 else None
        rss = {"portico": rss_kib([px.pid]), "nginx": rss_kib([ng.pid])}
    finally:
        for p in PROCS:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
        time.sleep(0.3)
        for p in PROCS:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
    report(results, validate_s, validate_kib, rss, d, hap is not None)


def best(rows):
    return max(rows, key=lambda r: r["rps"])


def report(results, validate_s, validate_kib, rss, d, with_haproxy):
    lines = [
        "# Hot path: Portico vs nginx (bench/hotpath.py)",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc = {os.cpu_count()}; "
        + ("every request with a browser's 1.3 KB of fields (`REQUEST=browser`); " if EXTRA_FIELDS else "")
        + f"load average before the table: {open('/proc/loadavg').read().split()[:3]}; "
        f"{ROUNDS} round(s) of {DURATION} s, best round's requests/s, CPU per request summed over rounds; "
        f"workers = 2 each; the member is bench/member.rs (one thread). "
        + ("PIN=1: the proxies on CPU 0, the member and the load generator on CPU 1. " if PIN else "")
        + "In brackets: the lowest and highest ratio of single rounds. "
        + ("HAProxy rows: `mode http` (keep-alive and re-encryption to the member, as the others), "
           "and `mode tcp`, a byte copy with no HTTP work, the cheapest any proxy can be on this bench."
           if with_haproxy else "HAProxy is not installed: no HAProxy rows."),
        "",
        "| scenario | target | requests/s | vs nginx | proxy CPU/request (us) | vs nginx | of which kernel (us) | member connections opened |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    held = results.pop("held", {})
    for scen in ("http", "https", "h2", "rules", "farm"):
        names = [n for (s, n) in results if s == scen]
        base = results.get((scen, "nginx"))
        for name in names:
            rows = results[(scen, name)]
            b = best(rows)
            n = sum(r["n"] for r in rows)
            cpu = sum((r["cpu_us"] or 0) * r["n"] for r in rows) / n if rows[0]["cpu_us"] is not None else None
            opened = sum(r["opened"] for r in rows)
            vs = vs_cpu = ""
            if base and name != "nginx":
                bb = best(base)
                vs = f"{b['rps'] / bb['rps']:.2f}x"
                # Each round measures every target once, so round i of one row and of nginx
                # ran a few seconds apart: their ratios show how far one run's noise goes.
                per = sorted(r["rps"] / q["rps"] for r, q in zip(rows, base))
                if len(per) > 1:
                    vs += f" ({per[0]:.2f}-{per[-1]:.2f})"
                bn = sum(r["n"] for r in base)
                bcpu = sum(r["cpu_us"] * r["n"] for r in base) / bn
                if cpu is not None:
                    vs_cpu = f"{cpu / bcpu:.2f}x"
            first = {"rules": "1 rule", "farm": "farm of 1"}.get(scen)
            if first and name != first:
                rows1 = results[(scen, first)]
                one = best(rows1)
                vs = f"{b['rps'] / one['rps']:.2f}x of {first}"
                n1 = sum(r["n"] for r in rows1)
                cpu1 = sum(r["cpu_us"] * r["n"] for r in rows1) / n1
                vs_cpu = f"{cpu / cpu1:.2f}x of {first}"
            cpu_s = f"{cpu:.1f}" if cpu is not None else "-"
            kernel = sum(r["kernel_us"] * r["n"] for r in rows) / n if cpu is not None else None
            kernel_s = f"{kernel:.1f}" if kernel is not None else "-"
            lines.append(f"| {scen} | {name} | {b['rps']:.0f} | {vs} | {cpu_s} | {vs_cpu} | {kernel_s} | {opened} |")
    if held:
        p, n = held.get("portico", {}), held.get("nginx", {})
        lines += [
            "",
            f"Held long polls (HTTPS in, re-encrypted to the member, {HELD} requested): Portico held "
            f"{p.get('held')} at {p.get('kib_per_held', 0):.1f} KiB each, nginx {n.get('held')} at "
            f"{n.get('kib_per_held', 0):.1f} KiB each: **{p.get('kib_per_held', 0) / max(n.get('kib_per_held', 1), 1e-9):.2f}x nginx**.",
        ]
    lines += [
        "",
        f"`portico validate` of 10,000 host rules: {validate_s:.2f} s, max RSS {validate_kib} KiB.",
        f"RSS after the run: Portico {rss['portico']} KiB, nginx {rss['nginx']} KiB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(os.environ.get("OUT", os.path.join(BENCH, "hotpath.md")), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
