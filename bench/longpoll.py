#!/usr/bin/env python3
"""Memory per held long poll: open N TLS connections (clear text with --plain) to a proxy, send one
`GET /long-poll?secs=S` on each, check that every one is held (sent, not answered,
not closed), and report how much the proxy's resident memory grew per held request.

Standard library only. Prints one JSON object on stdout; progress goes to stderr.

Exit status: 0 when all N were held, 3 when fewer were held (the JSON still says how
many, and the caller reports it loudly), 1 on anything else.
"""

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time


def log(msg):
    print(f"[longpoll] {msg}", file=sys.stderr, flush=True)


def children_of(pids):
    """The given pids plus all their descendants (nginx: master + workers)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the ppid follows the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        parent[int(d)] = int(fields[1])
    out = set(pids)
    grew = True
    while grew:
        grew = False
        for p, pp in parent.items():
            if pp in out and p not in out:
                out.add(p)
                grew = True
    return sorted(out)


def rss_kib(pids):
    total = 0
    for p in children_of(pids):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def established_to_port(port):
    """Sockets in ESTABLISHED whose remote port is `port` (the proxies' side of their
    connections to the member)."""
    n = 0
    want = f"{port:04X}"
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and parts[2].rsplit(":", 1)[1] == want:
                        n += 1
        except OSError:
            pass
    return n


class Conn:
    __slots__ = ("reader", "writer", "state", "task")

    def __init__(self):
        self.reader = None
        self.writer = None
        self.state = "new"  # new -> sent -> answered | closed | failed
        self.task = None


async def watch(c):
    try:
        data = await c.reader.read(1)
        c.state = "answered" if data else "closed"
    except (ConnectionError, ssl.SSLError, OSError):
        c.state = "closed"
    except asyncio.CancelledError:
        pass


async def open_one(c, args, ctx, sem, request, errors):
    async with sem:
        try:
            c.reader, c.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    args.address,
                    args.port,
                    ssl=ctx,
                    server_hostname=None if ctx is None else args.sni,
                    limit=4096,
                ),
                timeout=30,
            )
            c.writer.write(request)
            await c.writer.drain()
            c.state = "sent"
            c.task = asyncio.ensure_future(watch(c))
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            c.state = "failed"
            key = f"{type(e).__name__}: {e}"[:160]
            errors[key] = errors.get(key, 0) + 1


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    n = args.count
    if soft < n + 100:
        n = max(0, soft - 100)
        log(f"WARNING: open-file limit {soft} allows only {n} connections, not {args.count}")

    ctx = None if args.plain else ssl.create_default_context(cafile=args.cafile)
    request = (
        f"GET /long-poll?secs={args.secs} HTTP/1.1\r\n"
        f"Host: {args.sni}\r\nUser-Agent: portico-bench\r\nAccept: */*\r\n\r\n"
    ).encode()

    await asyncio.sleep(1)
    idle_rss = rss_kib(args.pid)
    idle_up = established_to_port(args.member_port)
    log(f"idle: proxy RSS {idle_rss} KiB, proxy->member connections {idle_up}")

    conns = [Conn() for _ in range(n)]
    errors = {}
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.monotonic()
    opening = [asyncio.ensure_future(open_one(c, args, ctx, sem, request, errors)) for c in conns]
    done, pending = await asyncio.wait(opening, timeout=args.open_timeout)
    for t in pending:
        t.cancel()
    open_secs = time.monotonic() - t0
    sent = sum(1 for c in conns if c.state in ("sent", "answered", "closed"))
    log(f"opened and sent {sent}/{n} in {open_secs:.1f}s; settling {args.settle}s")

    await asyncio.sleep(args.settle)
    held_rss = rss_kib(args.pid)
    held_up = established_to_port(args.member_port)
    await asyncio.sleep(1)
    held_rss = max(held_rss, rss_kib(args.pid))
    states = {}
    for c in conns:
        states[c.state] = states.get(c.state, 0) + 1
    held = states.get("sent", 0)
    elapsed = time.monotonic() - t0
    log(
        f"held {held}/{n} (states {states}); proxy RSS {held_rss} KiB; "
        f"proxy->member connections {held_up}; {elapsed:.1f}s after the first connect"
    )
    if elapsed >= args.secs:
        log("WARNING: measurement finished after the long poll would have answered")

    # Close everything, then see whether the proxy let go of the member connections too.
    for c in conns:
        if c.task:
            c.task.cancel()
        if c.writer:
            c.writer.transport.abort()
    await asyncio.sleep(0.5)
    after_up = None
    deadline = time.monotonic() + args.drain_wait
    while time.monotonic() < deadline:
        after_up = established_to_port(args.member_port)
        if after_up <= idle_up + 200:
            break
        await asyncio.sleep(0.5)
    after_up = established_to_port(args.member_port)
    after_rss = rss_kib(args.pid)
    log(f"after close: proxy->member connections {after_up}, proxy RSS {after_rss} KiB")

    per = (held_rss - idle_rss) / held if held else None
    result = {
        "label": args.label,
        "requested": args.count,
        "attempted": n,
        "sent": sent,
        "held": held,
        "states": states,
        "errors": errors,
        "idle_rss_kib": idle_rss,
        "held_rss_kib": held_rss,
        "after_close_rss_kib": after_rss,
        "kib_per_held": per,
        "open_secs": round(open_secs, 2),
        "upstream_conns_idle": idle_up,
        "upstream_conns_held": held_up,
        "upstream_conns_after_close": after_up,
    }
    print(json.dumps(result))
    if held == args.count:
        return 0
    return 3 if held > 0 else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="proxy HTTPS port on --address")
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--sni", default="app.contoso.com", help="SNI and Host")
    ap.add_argument("--cafile", help="CA that issued the proxy's certificate (required unless --plain)")
    ap.add_argument("--plain", action="store_true", help="clear-text HTTP to --port instead of TLS")
    ap.add_argument("--pid", type=int, action="append", required=True,
                    help="proxy process id (children are included); repeatable")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--secs", type=int, default=120, help="how long the member holds each poll")
    ap.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    ap.add_argument("--open-timeout", type=float, default=80)
    ap.add_argument("--settle", type=float, default=3)
    ap.add_argument("--drain-wait", type=float, default=10,
                    help="seconds to wait for the proxy to close its member connections")
    ap.add_argument("--member-port", type=int, default=14443)
    ap.add_argument("--label", default="proxy")
    parsed = ap.parse_args()
    if not parsed.plain and not parsed.cafile:
        ap.error("--cafile is required for TLS (or pass --plain)")
    sys.exit(asyncio.run(main(parsed)))
