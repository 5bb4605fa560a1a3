#!/usr/bin/env python3
"""Pinned NTLM connections per MiB of proxy memory: open N keep-alive connections (TLS,
or plain HTTP with --plain) to Portico, run the member's NTLM test double three-leg
handshake on each (`/auth/ntlm`), keep every connection open (each now owns a private,
pinned connection to a member), and report how much the proxy's resident memory grew.

Legs, per connection (tokens are the test double's, not real NTLMSSP):
  1. `Authorization: NTLM base64("TYPE1")`       -> 401 `WWW-Authenticate: NTLM base64("CHALLENGE:<id>")`
  2. `Authorization: NTLM base64("TYPE3:<user>")` -> 200 `authenticated as <user> on connection <id>`
The 200 must name the connection that got the challenge: a proxy that does not pin
fails the handshake. Each client must get its own member connection (member name + id
distinct across clients).

Standard library only. Prints one JSON object on stdout; progress goes to stderr.
Exit status: 0 when all N are authenticated and held, 3 when fewer are, 1 otherwise.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from longpoll import rss_kib  # noqa: E402 - same RSS measure as the long-poll scenario


def log(msg):
    print(f"[ntlm] {msg}", file=sys.stderr, flush=True)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def member_conns_of(pid, ports):
    """ESTABLISHED TCP sockets owned by `pid` whose remote port is one of `ports`
    (the proxy's connections to the members)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return None
    want = {f"{p:04X}" for p in ports}
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and parts[2].rsplit(":", 1)[1] in want and parts[9] in inodes:
                        n += 1
        except OSError:
            pass
    return n


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"][0]))
    elif "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return status, headers, body.decode("utf-8", "replace")


class Conn:
    __slots__ = ("reader", "writer", "state", "who", "task")

    def __init__(self):
        self.reader = None
        self.writer = None
        self.state = "new"  # new -> authenticated | closed | failed
        self.who = None
        self.task = None


async def watch(c):
    try:
        data = await c.reader.read(1)
        c.state = "unexpected data" if data else "closed"
    except (ConnectionError, ssl.SSLError, OSError):
        c.state = "closed"
    except asyncio.CancelledError:
        pass


async def handshake(c, i, args, ctx, sem, errors):
    def fail(why):
        c.state = "failed"
        errors[why[:160]] = errors.get(why[:160], 0) + 1

    async with sem:
        try:
            c.reader, c.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    args.address, args.port, ssl=ctx,
                    server_hostname=None if ctx is None else args.sni, limit=8192,
                ),
                timeout=30,
            )
            user = f"user{i}"

            def req(token):
                return (
                    f"GET /auth/ntlm HTTP/1.1\r\nHost: {args.sni}\r\nUser-Agent: portico-bench\r\n"
                    f"Authorization: NTLM {token}\r\n\r\n"
                ).encode()

            c.writer.write(req(b64("TYPE1")))
            status, h, _ = await asyncio.wait_for(read_response(c.reader), 30)
            chal = [v for v in h.get("www-authenticate", []) if v.upper().startswith("NTLM ")]
            if status != 401 or not chal:
                return fail(f"leg 1: status {status}, WWW-Authenticate {h.get('www-authenticate')}")
            challenge = base64.b64decode(chal[0].split(None, 1)[1]).decode()
            if not challenge.startswith("CHALLENGE:"):
                return fail(f"leg 1: challenge {challenge!r}")
            conn_id = challenge.split(":", 1)[1]
            c.writer.write(req(b64(f"TYPE3:{user}")))
            status, h, body = await asyncio.wait_for(read_response(c.reader), 30)
            if status != 200:
                return fail(f"leg 3: status {status}")
            m = re.search(r"authenticated as (\S+) on connection (\S+)", body)
            if not m or m.group(1) != user or m.group(2) != conn_id:
                return fail(f"leg 3: not the challenged member connection ({body.strip()[:80]!r} vs {conn_id})")
            c.who = (",".join(h.get("x-backend", [])), conn_id)
            c.state = "authenticated"
            c.task = asyncio.ensure_future(watch(c))
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            fail(f"{type(e).__name__}: {e}")


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

    await asyncio.sleep(1)
    idle_rss = rss_kib(args.pid)
    idle_up = member_conns_of(args.pid[0], args.member_port)
    log(f"idle: proxy RSS {idle_rss} KiB, proxy->member connections {idle_up}")

    conns = [Conn() for _ in range(n)]
    errors = {}
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(handshake(c, i, args, ctx, sem, errors)) for i, c in enumerate(conns)]
    _, pending = await asyncio.wait(tasks, timeout=args.open_timeout)
    for t in pending:
        t.cancel()
    open_secs = time.monotonic() - t0
    authed = sum(1 for c in conns if c.state == "authenticated")
    log(f"authenticated {authed}/{n} in {open_secs:.1f}s; settling {args.settle}s")

    await asyncio.sleep(args.settle)
    held_rss = rss_kib(args.pid)
    held_up = member_conns_of(args.pid[0], args.member_port)
    await asyncio.sleep(1)
    held_rss = max(held_rss, rss_kib(args.pid))
    states = {}
    for c in conns:
        states[c.state] = states.get(c.state, 0) + 1
    held = states.get("authenticated", 0)
    distinct = len({c.who for c in conns if c.state == "authenticated"})
    per_member = {}
    for c in conns:
        if c.state == "authenticated":
            per_member[c.who[0]] = per_member.get(c.who[0], 0) + 1
    log(f"held {held}/{n} (states {states}); {distinct} distinct member connections {per_member}; "
        f"proxy RSS {held_rss} KiB; proxy->member connections {held_up}")

    for c in conns:
        if c.task:
            c.task.cancel()
        if c.writer:
            c.writer.transport.abort()
    deadline = time.monotonic() + args.drain_wait
    after_up = None
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        after_up = member_conns_of(args.pid[0], args.member_port)
        if after_up is None or after_up <= (idle_up or 0) + 64 * len(args.member_port):
            break
    after_rss = rss_kib(args.pid)
    log(f"after close: proxy->member connections {after_up}, proxy RSS {after_rss} KiB")

    grew_mib = (held_rss - idle_rss) / 1024
    result = {
        "label": args.label,
        "tls": not args.plain,
        "requested": args.count,
        "attempted": n,
        "held": held,
        "distinct_member_conns": distinct,
        "per_member": per_member,
        "states": states,
        "errors": errors,
        "idle_rss_kib": idle_rss,
        "held_rss_kib": held_rss,
        "after_close_rss_kib": after_rss,
        "conns_per_mib": held / grew_mib if held and grew_mib > 0 else None,
        "kib_per_conn": (held_rss - idle_rss) / held if held else None,
        "open_secs": round(open_secs, 2),
        "upstream_conns_idle": idle_up,
        "upstream_conns_held": held_up,
        "upstream_conns_after_close": after_up,
    }
    print(json.dumps(result))
    if held == args.count and distinct == held:
        return 0
    return 3 if held > 0 else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="proxy port on --address")
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    ap.add_argument("--sni", default="app.contoso.com", help="SNI and Host")
    ap.add_argument("--cafile", help="CA that issued the proxy's certificate (TLS)")
    ap.add_argument("--pid", type=int, action="append", required=True,
                    help="proxy process id (children are included in RSS); the first one owns the member sockets")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    ap.add_argument("--open-timeout", type=float, default=120)
    ap.add_argument("--settle", type=float, default=3)
    ap.add_argument("--drain-wait", type=float, default=10,
                    help="seconds to wait for the proxy to close its pinned member connections")
    ap.add_argument("--member-port", type=int, action="append", required=True,
                    help="a member's port (repeatable)")
    ap.add_argument("--label", default="portico")
    a = ap.parse_args()
    if not a.plain and not a.cafile:
        ap.error("--cafile is needed for TLS (or pass --plain)")
    sys.exit(asyncio.run(main(a)))
