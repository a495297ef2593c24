"""A tiny EC2 instance metadata service (IMDSv2) on a free port, for tests.

It speaks the protocol a worker uses: ``PUT /latest/api/token`` with a TTL
header returns a token; ``GET /latest/meta-data/<path>`` needs that token
(401 without it) and answers 404 for a document that is not there, as EC2
does for ``spot/instance-action`` until an interruption is scheduled.
"""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PREFIX = "/latest/meta-data/"


class ImdsServer:
    def __init__(self, documents: dict[str, str] | None = None) -> None:
        self.documents: dict[str, str] = dict(documents or {})
        self.token = secrets.token_hex(8)
        self.requests: list[tuple[str, str, bool]] = []  # method, path, had a valid token
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                ok = self.path == "/latest/api/token" and \
                    self.headers.get("X-aws-ec2-metadata-token-ttl-seconds") is not None
                server.requests.append(("PUT", self.path, ok))
                self._reply(200 if ok else 400, server.token if ok else "")

            def do_GET(self) -> None:
                valid = self.headers.get("X-aws-ec2-metadata-token") == server.token
                server.requests.append(("GET", self.path, valid))
                if not valid:
                    self._reply(401, "")
                    return
                document = server.documents.get(self.path.removeprefix(_PREFIX))
                self._reply(404 if document is None else 200, document or "")

            def _reply(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ImdsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
