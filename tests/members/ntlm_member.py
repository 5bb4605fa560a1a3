#!/usr/bin/env python3
"""A farm member that signs users in with real NTLM (pyspnego) and Basic, and counts what
reaches it, so tests can tell which attempts Portico held back.

Usage: NTLM_USER_FILE=users.txt ntlm_member.py ADDRESS PORT
The user file has one `DOMAIN:user:password` per line (pyspnego reads it for NTLM; Basic
checks it here). GET /count answers JSON: attempts and successes per user (lower case),
counted only for requests carrying credentials; /count itself is not counted.
"""
import base64
import json
import os
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import spnego

LOCK = threading.Lock()
ATTEMPTS = {}
SUCCESSES = {}
CHALLENGES = [0]


def users():
    out = {}
    with open(os.environ["NTLM_USER_FILE"], encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                _domain, user, password = line.split(":", 2)
                out[user.lower()] = password
    return out


def ntlm_user(blob):
    """The user name of an NTLM AUTHENTICATE message, or None for other messages."""
    at = blob.find(b"NTLMSSP\0")
    if at < 0:
        return None
    msg = blob[at:]
    if len(msg) < 64 or struct.unpack_from("<I", msg, 8)[0] != 3:
        return None
    length, _, offset = struct.unpack_from("<HHI", msg, 36)
    flags = struct.unpack_from("<I", msg, 60)[0]
    raw = msg[offset : offset + length]
    return (raw.decode("utf-16-le") if flags & 1 else raw.decode("latin-1")).lower()


def count(table, user):
    with LOCK:
        table[user] = table.get(user, 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body.encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def challenge(self):
        self.reply(401, "sign in\n", [("WWW-Authenticate", "NTLM"), ("WWW-Authenticate", 'Basic realm="member"')])

    def do_GET(self):
        if self.path == "/count":
            with LOCK:
                body = json.dumps({"attempts": ATTEMPTS, "successes": SUCCESSES, "challenges": CHALLENGES[0]})
            return self.reply(200, body)
        auth = self.headers.get("Authorization")
        if not auth:
            return self.challenge()
        scheme, _, token = auth.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            user, _, password = base64.b64decode(token).decode("utf-8", "replace").partition(":")
            name = user.split("\\")[-1].split("@")[0].lower()
            count(ATTEMPTS, name)
            if users().get(name) == password:
                count(SUCCESSES, name)
                return self.reply(200, "hello %s\n" % name)
            return self.challenge()
        if scheme in ("ntlm", "negotiate"):
            blob = base64.b64decode(token)
            name = ntlm_user(blob)
            if name is None:
                # NEGOTIATE: a fresh handshake on this connection. Anything else (a
                # Kerberos ticket this member cannot read) is refused like a bad password.
                self.ctx = spnego.server(protocol="ntlm")
                try:
                    out = self.ctx.step(blob)
                except Exception:
                    count(ATTEMPTS, "(unnamed)")
                    return self.challenge()
                with LOCK:
                    CHALLENGES[0] += 1
                return self.reply(401, "challenge\n", [("WWW-Authenticate", "NTLM " + base64.b64encode(out).decode())])
            count(ATTEMPTS, name)
            ctx = getattr(self, "ctx", None)
            try:
                if ctx is None:
                    raise ValueError("AUTHENTICATE without a handshake")
                ctx.step(blob)
                ok = ctx.complete
            except Exception:
                ok = False
            self.ctx = None
            if ok:
                count(SUCCESSES, name)
                return self.reply(200, "hello %s\n" % name)
            return self.challenge()
        return self.challenge()


def main():
    server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
