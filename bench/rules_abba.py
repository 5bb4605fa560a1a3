#!/usr/bin/env python3
"""The cost of a big config, measured so that drift within a run cancels: a one-rule config
and one with 1,000 host rules ahead of the matching rule (bench/hotpath.py's `rules`
scenario), both running at once, loaded in turn in the order 1, 1000, 1000, 1, ... (ABBA),
so that neither is always measured first. Prints each run and the totals' ratios.

    python3 bench/rules_abba.py              # 8 runs of 6 s
    RUNS=12 DURATION=8 python3 bench/rules_abba.py

Needs wrk and openssl, and a release build (`cargo build --release` and
`--example bench-member`). All traffic stays on 127.0.0.1.
"""

import os
import signal
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hotpath as h  # noqa: E402

RUNS = int(os.environ.get("RUNS", "8"))
# hotpath.wrk's run length (it also refuses a run with errors).
h.DURATION = int(os.environ.get("DURATION", "6"))


def main():
    d = tempfile.mkdtemp(prefix="portico-abba-")
    os.makedirs(f"{d}/tmp")
    h.pki(d)
    member = f"{h.REPO}/target/release/examples/bench-member"
    portico = os.environ.get("PORTICO_BIN", f"{h.REPO}/target/release/portico")
    try:
        m = h.start([member, f"127.0.0.1:{h.PORTS['member-http']}"], f"{d}/member.log")
        configs = {"1 rule": ("rules1", 0), "1,000 host rules": ("rules1000", 1000)}
        procs = {}
        for name, (port, rules) in configs.items():
            with open(f"{d}/{port}.toml", "w") as f:
                f.write(h.portico_config(d, h.PORTS[port], None, host_rules=rules))
            procs[name] = (h.start([portico, "run", "--config", f"{d}/{port}.toml"], f"{d}/{port}.log"), h.PORTS[port])
        h.wait_port(h.PORTS["member-http"], m)
        for p, port in procs.values():
            h.wait_port(port, p)
        names = list(configs)
        totals = {n: [0, 0.0] for n in names}
        for i in range(RUNS):
            name = names[(i + 1) // 2 % 2]  # 0, 1, 1, 0, 0, 1, 1, 0, ...
            p, port = procs[name]
            c0 = h.cpu_seconds(p.pid)
            rps, n = h.wrk(f"http://127.0.0.1:{port}/status/200")
            c1 = h.cpu_seconds(p.pid)
            cpu = c1[0] - c0[0] + c1[1] - c0[1]
            totals[name][0] += n
            totals[name][1] += cpu
            print(f"{name}: {rps:.0f} requests/s, {cpu * 1e6 / n:.1f} us CPU per request", flush=True)
        (n1, c1), (n2, c2) = totals[names[0]], totals[names[1]]
        print(f"1,000 host rules against 1 rule: {n2 / n1:.2f}x the requests, "
              f"{(c2 / n2) / (c1 / n1):.2f}x the CPU per request")
    finally:
        for p in h.PROCS:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
