"""A webhook receiver on 127.0.0.1 for tests: records deliveries, fails the first ones."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


class Receiver:
    """Answers ``fail_first`` deliveries of each webhook id with 500, then 204."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.attempts: list[dict[str, Any]] = []  # every request: headers, body, verified
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except Exception:  # any verification failure is recorded, not raised
                    verified = False
                with receiver.lock:
                    seen = sum(1 for a in receiver.attempts
                               if a["headers"].get("webhook-id") == headers.get("webhook-id"))
                    receiver.attempts.append({"headers": headers, "body": json.loads(body),
                                              "verified": verified, "path": self.path})
                self.send_response(500 if seen < receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Attempts carrying webhook events of ``kind``."""
        with self.lock:
            return [a for a in self.attempts if a["body"]["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
