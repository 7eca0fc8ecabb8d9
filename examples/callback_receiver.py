#!/usr/bin/env python3
"""A small completion-callback receiver, standard library only: verifies each delivery's
Standard Webhooks signature, prints the CloudEvent as one JSON line, and answers 204 (401 when
the signature does not verify). For trying callbacks with curl; see README.md.

    python3 examples/callback_receiver.py PORT [whsec_SECRET]
"""
import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's whole check, as docs/api.md shows it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False  # too old (or from the future): a replay
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


class Receiver(BaseHTTPRequestHandler):
    secret = None
    seen = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        verified = self.secret is None or verify(self.secret, self.headers, body)
        event = json.loads(body)
        duplicate = self.headers["webhook-id"] in self.seen  # at least once: deduplicate
        self.seen.add(self.headers["webhook-id"])
        print(json.dumps({"verified": verified, "duplicate": duplicate, "event": event}), flush=True)
        self.send_response(204 if verified else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    Receiver.secret = sys.argv[2] if len(sys.argv) > 2 else None
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()
