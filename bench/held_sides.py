#!/usr/bin/env python3
"""Where a held long poll's memory goes: Portico's resident memory per held request with TLS
or clear text on each side (client in, member out), over the hotpath config. The difference
between rows is what TLS costs on one side; the clear-text row is what the HTTP/1.1 machinery
and Portico's own state cost.

    cargo build --release && cargo build --release --example bench-member
    python3 bench/held_sides.py                      # N=1000 per row
    N=2000 PORTICO_BIN=/path/to/other/portico python3 bench/held_sides.py

Portico alone (nginx is not run here: bench/hotpath.py compares the two). Each row starts a
new Portico, so no row inherits another's heap. Prints a Markdown table on stdout.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import hotpath as hp  # noqa: E402  (the same PKI, ports and config as the hot-path bench)

N = int(os.environ.get("N", "1000"))
PORTICO = os.environ.get("PORTICO_BIN", f"{hp.REPO}/target/release/portico")
MEMBER = f"{hp.REPO}/target/release/examples/bench-member"
ROWS = [("TLS", "TLS"), ("TLS", "clear"), ("clear", "TLS"), ("clear", "clear")]


def held(d, client, member):
    cfg = hp.portico_config(d, hp.PORTS["portico-http"], hp.PORTS["portico-https"])
    scheme = "https" if member == "TLS" else "http"
    cfg = cfg.replace('action = { route = "fe" }', f'action = {{ route = "fe", scheme = "{scheme}" }}')
    path = os.path.join(d, "sides.toml")
    with open(path, "w") as f:
        f.write(cfg)
    log = open(os.path.join(d, "portico.log"), "w")
    p = subprocess.Popen([PORTICO, "run", "--config", path], stdout=log, stderr=subprocess.STDOUT)
    try:
        hp.wait_port(hp.PORTS["portico-http"], p)
        args = [sys.executable, os.path.join(BENCH, "longpoll.py"), "--pid", str(p.pid),
                "--count", str(N), "--secs", "30", "--label", "portico", "--drain-wait", "1",
                "--open-timeout", "200", "--concurrency", "20",
                "--member-port", str(hp.PORTS["member-https" if member == "TLS" else "member-http"])]
        if client == "TLS":
            args += ["--port", str(hp.PORTS["portico-https"]), "--cafile", f"{d}/public-ca.pem"]
        else:
            args += ["--port", str(hp.PORTS["portico-http"]), "--plain"]
        out = subprocess.run(args, capture_output=True, text=True)
        lines = out.stdout.strip().splitlines()
        if not lines:
            sys.exit(f"longpoll.py printed nothing:\n{out.stderr[-2000:]}")
        return json.loads(lines[-1])
    finally:
        p.terminate()
        p.wait(60)


def main():
    for exe in (PORTICO, MEMBER):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: cargo build --release && cargo build --release --example bench-member")
    with tempfile.TemporaryDirectory(prefix="portico-sides.") as d:
        hp.pki(d)
        members = [
            subprocess.Popen([MEMBER, f"127.0.0.1:{hp.PORTS['member-http']}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([MEMBER, f"127.0.0.1:{hp.PORTS['member-https']}", f"{d}/member.pem", f"{d}/member.key"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        try:
            time.sleep(0.5)
            print(f"Held long polls, Portico alone, {N} per row ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}):\n")
            print("| client → Portico | Portico → member | held | KiB per held poll |")
            print("| --- | --- | ---: | ---: |")
            for client, member in ROWS:
                r = held(d, client, member)
                print(f"| {client} | {member} | {r['held']} of {N} | {r['kib_per_held']:.1f} |", flush=True)
        finally:
            for m in members:
                m.terminate()


if __name__ == "__main__":
    main()
