"""A webhook receiver for the alarm delivery tests (Python's http.server).

Usage:
  webhook_receiver.py SECRET FAIL_FIRST
      Listens on 127.0.0.1 (a free port); prints {"port": N} once listening,
      then one JSON line per request:
      {"status", "delivery", "signature_ok", "received_ms", "body"}.
      The first FAIL_FIRST requests are answered 503, the rest 200.
      The signature is checked the way a receiver should: HMAC-SHA256 keyed
      with the shared secret over the X-Medmesh-Timestamp header, ".", and
      the raw body, compared in constant time, timestamp within 5 minutes.
Runs until killed.
"""
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secret, fail_first = sys.argv[1].encode(), int(sys.argv[2])
lock = threading.Lock()
seen = 0


def signature_ok(timestamp, body, header):
    if not header.startswith("sha256=") or not timestamp.isdigit():
        return False
    if abs(time.time() * 1000 - int(timestamp)) > 5 * 60 * 1000:
        return False
    want = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header[len("sha256="):])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            seen += 1
            status = 503 if seen <= fail_first else 200
        ok = signature_ok(
            self.headers.get("x-medmesh-timestamp", ""),
            body,
            self.headers.get("x-medmesh-signature", ""),
        )
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()
        print(
            json.dumps(
                {
                    "status": status,
                    "delivery": self.headers.get("x-medmesh-delivery"),
                    "signature_ok": ok,
                    "received_ms": int(time.time() * 1000),
                    "body": json.loads(body),
                }
            ),
            flush=True,
        )

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
