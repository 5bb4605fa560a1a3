#!/usr/bin/env python3
"""Turns the raw outputs of bench/run.sh (wrk text, longpoll.py JSON) into the results
table. A measurement whose run had errors is shown as FAILED, never as a number, and
the exit status is then 1.

    report.py --dir RUNDIR --out results.md --meta "Date=..." --meta "nproc=2" ...
"""

import argparse
import json
import os
import re
import glob
import sys

PROXIES = ("portico", "nginx")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
    r["mibps"] = float(m.group(1)) * BYTES[m.group(2)] / 1024**2 if m else None
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    r["p99_ms"] = float(m.group(1)) * UNITS[m.group(2)] if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


def check_wrk(r, min_requests):
    """None when the run is usable, else why not."""
    if r["rps"] is None or r["requests"] < min_requests:
        return f"only {r['requests']} requests completed"
    if r["non2xx"]:
        return f"{r['non2xx']} responses with a status >= 400"
    errs = sum(r["socket_errors"].values())
    allowed = r["requests"] // 1000  # 0.1 %: a short run must be clean
    if errs > allowed:
        return f"{errs} socket errors {r['socket_errors']} (allowed {allowed})"
    return None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()

    failures = []
    notes = list(args.note)
    res = {p: {} for p in PROXIES}

    rounds_seen = {}

    def wrk(proxy, name, min_requests):
        """Best usable round of a scenario, with CPU totals over all rounds; None when
        any round had errors (a proxy that fails once does not get a number)."""
        paths = sorted(glob.glob(os.path.join(args.dir, f"{proxy}-{name}-r*.txt")))
        if not paths:
            failures.append(f"{proxy} {name}: not run")
            return None
        runs = []
        for path in paths:
            r = parse_wrk(open(path).read())
            why = check_wrk(r, min_requests)
            if why:
                failures.append(f"{proxy} {name} ({os.path.basename(path)}): {why}")
                return None
            errs = sum(r["socket_errors"].values())
            if errs:
                notes.append(f"{proxy} {name}: {errs} socket errors {r['socket_errors']} in {r['requests']} requests (within tolerance)")
            try:
                c0, c1 = map(float, open(path[:-4] + ".cpu").read().split())
                r["cpu_s"] = c1 - c0
            except (OSError, ValueError):
                r["cpu_s"] = None
            try:
                o0, o1 = map(int, open(path[:-4] + ".opens").read().split())
                r["opens"] = o1 - o0
            except (OSError, ValueError):
                r["opens"] = None
            m = re.search(r"(\d+) threads and (\d+) connections", open(path).read())
            r["conns"] = int(m.group(2)) if m else 0
            runs.append(r)
        key = "mibps" if name == "download" else "rps"
        best = dict(max(runs, key=lambda r: r[key] or 0))
        best["all"] = [r[key] for r in runs]
        rounds_seen[(proxy, name)] = best["all"]
        reqs = sum(r["requests"] for r in runs)
        cpu = [r["cpu_s"] for r in runs]
        if None not in cpu and reqs:
            best["cpu_us_per_req"] = sum(cpu) / reqs * 1e6
            best["cpu_s_per_gib"] = sum(cpu) / (reqs * 16 / 1024)  # download: 16 MiB each
        opens = [r["opens"] for r in runs]
        if name == "keepalive" and None not in opens and reqs:
            # connects beyond wrk's own: new connections from the proxy to the member
            member = sum(max(0, r["opens"] - r["conns"]) for r in runs)
            best["member_conns_per_1k"] = member / reqs * 1000
        return best

    for p in PROXIES:
        res[p]["keepalive"] = wrk(p, "keepalive", 100)
        res[p]["handshake"] = wrk(p, "handshake", 50)
        res[p]["download"] = wrk(p, "download", 4)
        path = os.path.join(args.dir, f"{p}-longpoll.json")
        lp = None
        if os.path.exists(path):
            try:
                lp = json.load(open(path))
            except ValueError:
                lp = None
        if lp is None:
            failures.append(f"{p} long poll: no result (see {args.dir}/{p}-longpoll.err)")
        else:
            if lp["held"] != lp["requested"]:
                msg = (f"{p} long poll: only {lp['held']} of {lp['requested']} requests held "
                       f"(states {lp['states']}, errors {lp['errors']})")
                if lp["held"] == 0:
                    failures.append(msg)
                    lp = None
                else:
                    notes.append("WARNING: " + msg + "; memory is per request actually held")
            if lp and lp["upstream_conns_after_close"] is not None and \
                    lp["upstream_conns_after_close"] > lp["upstream_conns_idle"] + 200:
                notes.append(f"{p}: {lp['upstream_conns_after_close']} connections to the member still open "
                             f"~10 s after the {lp['held']} clients went away "
                             f"(before: {lp['upstream_conns_idle']})")
        res[p]["longpoll"] = lp

    # Issue 3: the farm of one (portico) against the farm of three (portico3), and NTLM
    # connections pinned to members by portico3.
    farm = {"farm1": wrk("portico", "farm1", 100), "farm3": wrk("portico3", "farm3", 100)}
    ntlm = None
    path = os.path.join(args.dir, "portico3-ntlm.json")
    if os.path.exists(path):
        try:
            ntlm = json.load(open(path))
        except ValueError:
            ntlm = None
    if ntlm is None:
        failures.append(f"NTLM pinned connections: no result (see {args.dir}/portico3-ntlm.err)")
    else:
        if ntlm["held"] != ntlm["requested"] or ntlm["distinct_member_conns"] != ntlm["held"]:
            msg = (f"NTLM: {ntlm['held']} of {ntlm['requested']} connections authenticated and held, "
                   f"{ntlm['distinct_member_conns']} distinct member connections "
                   f"(states {ntlm['states']}, errors {ntlm['errors']})")
            if ntlm["held"] == 0 or ntlm["distinct_member_conns"] != ntlm["held"]:
                failures.append(msg)
                ntlm = None
            else:
                notes.append("WARNING: " + msg + "; memory is per connection actually held")
        if ntlm and ntlm["upstream_conns_after_close"] is not None and ntlm["upstream_conns_idle"] is not None and \
                ntlm["upstream_conns_after_close"] > ntlm["upstream_conns_idle"] + 200:
            notes.append(f"portico3: {ntlm['upstream_conns_after_close']} member connections still open ~10 s after "
                         f"the {ntlm['held']} NTLM clients went away (before: {ntlm['upstream_conns_idle']})")

    def val(p, scen, key):
        r = res[p].get(scen)
        return None if r is None else r.get(key)

    rows = []

    def row(label, scen, key, digits, lower_better=False):
        a, b = val("portico", scen, key), val("nginx", scen, key)
        ratio = f"{a / b:.2f}x" if a is not None and b else "n/a"
        if lower_better and ratio != "n/a":
            ratio += " (lower is better)"
        cell = lambda v, p: fmt(v, digits) if res[p].get(scen) is not None else "FAILED"
        rows.append(f"| {label} | {cell(a, 'portico')} | {cell(b, 'nginx')} | {ratio} |")

    row("HTTPS keep-alive `/status/200`, 64 conns: requests/s", "keepalive", "rps", 0)
    row("HTTPS keep-alive `/status/200`, 64 conns: p99 latency (ms)", "keepalive", "p99_ms", 2, True)
    row("HTTPS keep-alive: proxy CPU per request (µs)", "keepalive", "cpu_us_per_req", 1, True)
    row("HTTPS keep-alive: new proxy→member connections per 1,000 requests", "keepalive", "member_conns_per_1k", 2, True)
    row("New TLS connection per request (`Connection: close`): requests/s", "handshake", "rps", 0)
    row("New TLS connection per request: proxy CPU per request (µs)", "handshake", "cpu_us_per_req", 0, True)
    row("16 MiB download `/download?bytes=16777216`, 4 conns: MiB/s", "download", "mibps", 1)
    row("16 MiB download: proxy CPU seconds per GiB", "download", "cpu_s_per_gib", 2, True)
    row("Memory per held long poll: KiB (lower is better)", "longpoll", "kib_per_held", 1, True)

    held = {p: (res[p]["longpoll"] or {}).get("held") for p in PROXIES}
    idle = {p: (res[p]["longpoll"] or {}).get("idle_rss_kib") for p in PROXIES}
    full = {p: (res[p]["longpoll"] or {}).get("held_rss_kib") for p in PROXIES}
    rows.append(f"| Long polls held at once (count) | {fmt(held['portico'])} | {fmt(held['nginx'])} | |")
    rows.append(f"| Proxy RSS idle → holding (MiB) | {fmt(idle['portico'] and idle['portico'] / 1024, 1)} → "
                f"{fmt(full['portico'] and full['portico'] / 1024, 1)} | {fmt(idle['nginx'] and idle['nginx'] / 1024, 1)} → "
                f"{fmt(full['nginx'] and full['nginx'] / 1024, 1)} | |")

    frows = []

    def frow(label, key, digits, lower_better=False):
        a = (farm["farm1"] or {}).get(key)
        b = (farm["farm3"] or {}).get(key)
        ratio = f"{b / a:.2f}x" if a and b is not None else "n/a"
        if lower_better and ratio != "n/a":
            ratio += " (lower is better)"
        cell = lambda v, f: fmt(v, digits) if farm[f] is not None else "FAILED"
        frows.append(f"| {label} | {cell(a, 'farm1')} | {cell(b, 'farm3')} | {ratio} |")

    frow("HTTPS keep-alive `/status/200`, 64 conns: requests/s", "rps", 0)
    frow("HTTPS keep-alive: p99 latency (ms)", "p99_ms", 2, True)
    frow("HTTPS keep-alive: proxy CPU per request (µs)", "cpu_us_per_req", 1, True)

    nrows = []
    if ntlm:
        n = ntlm
        nrows.append(f"| Pinned NTLM connections held per MiB of Portico RSS (higher is better) | "
                     f"{fmt(n['conns_per_mib'], 1)} |")
        nrows.append(f"| Memory per pinned NTLM connection: KiB (client TLS connection + pinned member TLS connection) | "
                     f"{fmt(n['kib_per_conn'], 1)} |")
        nrows.append(f"| NTLM-authenticated connections held at once / distinct member connections | "
                     f"{fmt(n['held'])} / {fmt(n['distinct_member_conns'])} |")
        nrows.append(f"| Per member | " + ", ".join(f"{k or '?'}: {v:,}" for k, v in sorted(n["per_member"].items())) + " |")
        nrows.append(f"| Portico RSS idle → holding → just after close (MiB) | {n['idle_rss_kib'] / 1024:.1f} → "
                     f"{n['held_rss_kib'] / 1024:.1f} → {n['after_close_rss_kib'] / 1024:.1f} |")
        nrows.append(f"| Portico→member connections idle → holding → after close | {n['upstream_conns_idle']} → "
                     f"{n['upstream_conns_held']} → {n['upstream_conns_after_close']} |")
        nrows.append(f"| Time to open and authenticate all (s, 100 in flight) | {n['open_secs']} |")
    else:
        nrows.append("| Pinned NTLM connections held per MiB of Portico RSS | FAILED |")

    out = ["# Portico vs nginx", ""]
    out += [f"- {m}" for m in args.meta]
    out += ["", "| scenario | Portico | nginx | ratio (Portico/nginx) |", "| --- | --- | --- | --- |"]
    out += rows
    out += ["", "Ratios above 1 are better for requests/s and MiB/s; for p99 latency, CPU and memory, lower is better. "
            "Load rows show each proxy's best round; CPU rows are the proxy processes' user+system time "
            "over all rounds divided by the requests served (robust to other load on the machine)."]
    out += ["", "## Portico farms: the cost of choosing, NTLM pinning", "",
            "Same wrk keep-alive scenario as above, through the same farm with one member and with three "
            "(weighted round robin, equal weights), rounds alternating. The ratio is 3 members / 1 member.", "",
            "| scenario | farm of 1 member | farm of 3 members | ratio (3/1) |", "| --- | --- | --- | --- |"]
    out += frows
    out += ["", "NTLM: `ntlm.py` opens TLS keep-alive connections to the farm of three and runs the member's "
            "three-leg NTLM test double on each (`TYPE1` → 401 `CHALLENGE:<id>` → `TYPE3:<user>` → 200 "
            "on the challenged member connection), keeps them all open, and measures Portico's RSS growth "
            "(connections / (RSS holding − RSS idle)).", "",
            "| NTLM pinning (Portico, farm of 3) | value |", "| --- | --- |"]
    out += nrows
    if rounds_seen:
        out += ["", "Every round (requests/s, or MiB/s for the download):", ""]
        for (p, n), vals in sorted(rounds_seen.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            out.append(f"- {n} {p}: " + ", ".join(fmt(v, 1 if n == 'download' else 0) for v in vals))
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    if failures:
        out += ["", "**FAILED measurements (errors from the proxy; no number is shown for them):**", ""]
        out += [f"- {f}" for f in failures]
    text = "\n".join(out) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    if failures:
        print("BENCHMARK FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
