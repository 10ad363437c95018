"""The HTTP side: a real threaded server that turns requests into
`HttpRequest`s for the dispatcher and writes its `HttpResponse`s back.

Kept free of Slack logic so the dispatcher can be exercised without sockets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpRequest:
    verb: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


App = Callable[[HttpRequest], HttpResponse]
# A response with this status is no response: the connection is closed unanswered.
DROP = 0


class _Server(ThreadingHTTPServer):
    # Request threads must not keep the test process alive.
    daemon_threads = True

    def __init__(self, app: App) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.app = app


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "playground/1.0"

    # do_GET/do_POST: names fixed by http.server.
    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        # Silence per-request stderr lines; the call log is the record.
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        url = urlsplit(self.path)
        request = HttpRequest(
            verb=self.command,
            path=url.path,
            query=url.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        self._write(cast(_Server, self.server).app(request))

    def _write(self, response: HttpResponse) -> None:
        if response.status == DROP:
            self.close_connection = True  # a dropped connection: no status line, no body
            return
        payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class BackgroundServer:
    """Serves `app` on 127.0.0.1:<free port> from a daemon thread."""

    def __init__(self, app: App) -> None:
        self._server = _Server(app)
        self._thread = threading.Thread(target=self._serve, name="playground", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        # A short poll interval keeps stop() (and so each test's teardown) fast.
        self._server.serve_forever(poll_interval=0.02)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
