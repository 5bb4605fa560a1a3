#!/usr/bin/env python3
"""Held Outlook Anywhere channels per MiB of proxy memory.

Each channel is what Outlook opens for RPC over HTTP: two TLS connections, each carrying one
long-lived request, both authenticated (`Authorization: Negotiate ...`, so Portico pins each
to a private member connection, as it must for NTLM):
  - RPC_IN_DATA, `Content-Length: 1073741824`, then a 1 KiB piece; the member reads pieces
    as they come and answers only at the end (never, here);
  - RPC_OUT_DATA, a 76-byte body, answered 200 with `Content-Length: 1073741824` whose
    pieces the member streams every 500 ms; the channel counts as held once the head and a
    first piece have arrived.
N pairs are opened and held; the proxy's resident memory growth is reported per pair.

Standard library only. Prints one JSON object on stdout; progress goes to stderr.
Exit status: 0 when all N pairs are held, 3 when fewer are, 1 otherwise.
"""

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from longpoll import rss_kib  # noqa: E402 - same RSS measure as the long-poll scenario


def log(msg):
    print(f"[outlook] {msg}", file=sys.stderr, flush=True)


DECLARED = 1 << 30


class Pair:
    __slots__ = ("streams", "state", "pieces")

    def __init__(self):
        self.streams = []
        self.state = "new"  # new -> held | failed
        self.pieces = 0


async def open_pair(p, i, args, ctx, sem, errors):
    def fail(why):
        p.state = "failed"
        errors[why[:160]] = errors.get(why[:160], 0) + 1

    async with sem:
        try:
            conn = lambda: asyncio.wait_for(  # noqa: E731
                asyncio.open_connection(args.address, args.port, ssl=ctx,
                                        server_hostname=args.sni, limit=16384),
                timeout=30,
            )
            target = f"/rpc/rpcproxy.dll?ex01.contoso.local:6001&pair={i}"
            common = (f"Host: {args.sni}\r\nUser-Agent: MSRPC\r\nAccept: application/rpc\r\n"
                      f"Authorization: Negotiate dGVzdA==\r\nCache-Control: no-cache\r\n")
            r_in, w_in = await conn()
            w_in.write((f"RPC_IN_DATA {target} HTTP/1.1\r\n{common}"
                        f"Content-Length: {DECLARED}\r\n\r\n").encode() + b"\x05" * 1024)
            await w_in.drain()
            r_out, w_out = await conn()
            w_out.write((f"RPC_OUT_DATA {target} HTTP/1.1\r\n{common}"
                         f"Content-Length: 76\r\n\r\n").encode() + b"\x05" * 76)
            await w_out.drain()
            head = await asyncio.wait_for(r_out.readuntil(b"\r\n\r\n"), 30)
            status = head.split(b" ", 2)[1]
            if status != b"200":
                return fail(f"RPC_OUT_DATA: status {status.decode()}")
            if str(DECLARED).encode() not in head:
                return fail("RPC_OUT_DATA: no 1 GiB Content-Length")
            piece = await asyncio.wait_for(r_out.read(64), 30)
            if not piece:
                return fail("RPC_OUT_DATA: closed before the first piece")
            p.pieces = 1
            p.streams = [(r_in, w_in), (r_out, w_out)]
            p.state = "held"
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            fail(f"{type(e).__name__}: {e}")


async def still_open(p):
    """Both streams of a held pair are still open: the RPC_IN side has no answer (the member
    answers only at the end) and the RPC_OUT side keeps streaming."""
    (r_in, _), (r_out, _) = p.streams
    if r_in.at_eof() or r_out.at_eof():
        return False
    try:
        got = await asyncio.wait_for(r_out.read(4096), 3)
        return bool(got)
    except asyncio.TimeoutError:
        return False


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    n = args.count
    if soft < 2 * n + 100:
        n = max(0, (soft - 100) // 2)
        log(f"WARNING: open-file limit {soft} allows only {n} pairs, not {args.count}")
    ctx = ssl.create_default_context(cafile=args.cafile)
    ctx.set_alpn_protocols(["http/1.1"])

    await asyncio.sleep(1)
    idle_rss = rss_kib(args.pid)
    log(f"idle: proxy RSS {idle_rss} KiB")
    pairs = [Pair() for _ in range(n)]
    errors = {}
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(open_pair(p, i, args, ctx, sem, errors)) for i, p in enumerate(pairs)]
    _, pending = await asyncio.wait(tasks, timeout=args.open_timeout)
    for t in pending:
        t.cancel()
    open_secs = time.monotonic() - t0
    held = [p for p in pairs if p.state == "held"]
    log(f"held {len(held)}/{n} pairs in {open_secs:.1f}s; settling {args.settle}s")
    await asyncio.sleep(args.settle)
    held_rss = rss_kib(args.pid)
    await asyncio.sleep(1)
    held_rss = max(held_rss, rss_kib(args.pid))
    # Every held pair must still be open and streaming after the settle time.
    alive = await asyncio.gather(*(still_open(p) for p in held))
    streaming = sum(1 for a in alive if a)
    for p in pairs:
        for _, w in p.streams:
            w.close()
    grown = max(0, held_rss - idle_rss)
    per_pair = grown / len(held) if held else None
    out = {
        "label": args.label,
        "pairs_wanted": args.count,
        "pairs_held": len(held),
        "pairs_streaming_after_settle": streaming,
        "idle_rss_kib": idle_rss,
        "held_rss_kib": held_rss,
        "kib_per_pair": round(per_pair, 2) if per_pair is not None else None,
        "pairs_per_mib": round(1024 / per_pair, 1) if per_pair else None,
        "open_secs": round(open_secs, 1),
        "errors": errors,
    }
    print(json.dumps(out))
    if not held or streaming < len(held):
        return 3 if held else 1
    return 0 if len(held) == args.count else 3


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", default="mail.contoso.com")
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--pid", type=int, nargs="+", required=True, help="proxy process(es); children count too")
    ap.add_argument("--count", type=int, default=1000, help="channel pairs to hold")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--open-timeout", type=float, default=120)
    ap.add_argument("--settle", type=float, default=3)
    ap.add_argument("--label", default="proxy")
    sys.exit(asyncio.run(main(ap.parse_args())))
