"""The HTTP front: `POST /slack/events` (events, slash commands, interactivity), `GET /healthz`, `GET /metrics`.

Served by waitress, a production WSGI server that runs in this process, so the model stays resident
in one place. Requests are checked here, and only here, before Bolt sees them: a bad signature or a
stale timestamp gets 401; a body that does not parse, or whose shape is not one Slack sends
(handlers.slack.envelopes), gets 400 with the reason (Bolt alone would answer 500, and Slack retries
that); an event or interaction Ember has no listener for gets 200 and goes no further.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App, BoltRequest
from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier
from waitress.server import create_server

from handlers.slack import envelopes

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_BODY_BYTES = 1 << 20
# Open connections waitress serves at once; past them it stops accepting until one closes. Its
# default (100) left part of a burst of Slack deliveries, each on its own connection, unanswered.
CONNECTION_LIMIT = 1000
Health = Callable[[], dict[str, Any]]


class EmberWSGI:
    """Ember's own routes; any other path goes to `fallback` (the playground's page), else 404."""

    def __init__(
        self,
        bolt: App | None,
        signing_secret: str | None,
        health: Health,
        metrics: Callable[[], bytes],
        fallback: WSGIApplication | None = None,
    ) -> None:
        self.bolt = bolt
        self.verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.health = health
        self.metrics = metrics
        self.fallback = fallback

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if path == "/healthz" and method in ("GET", "HEAD"):
            status, headers, body = 200, {"content-type": "application/json"}, json.dumps(self.health())
        elif path == "/metrics" and method in ("GET", "HEAD"):
            status, headers, body = 200, {"content-type": CONTENT_TYPE_LATEST}, self.metrics().decode("utf-8")
        elif path == EVENTS_PATH and method == "POST" and self.bolt is not None:
            status, headers, body = self._slack(environ)
        elif path == EVENTS_PATH and self.bolt is not None:
            status, headers, body = 405, {"content-type": "text/plain", "allow": "POST"}, "POST only\n"
        elif self.fallback is not None:
            return self.fallback(environ, start_response)
        else:
            status, headers, body = 404, {"content-type": "text/plain"}, "not found\n"
        payload = body.encode("utf-8")
        headers = {**headers, "content-length": str(len(payload))}
        start_response(f"{status} {_REASONS.get(status, '')}".strip(), list(headers.items()))
        return [payload]

    def _slack(self, environ: WSGIEnvironment) -> tuple[int, dict[str, str], str]:
        assert self.bolt is not None
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY_BYTES:
            return 413, {"content-type": "text/plain"}, "request body too large\n"
        raw = environ["wsgi.input"].read(length).decode("utf-8", errors="replace") if length else ""
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        if self.verifier and not self.verifier.is_valid_request(raw, headers):
            return 401, {"content-type": "text/plain"}, "invalid signature or stale timestamp\n"
        try:
            body = parse_body(raw, headers["content-type"].split(";")[0].strip() or None)
        except ValueError:
            return 400, {"content-type": "text/plain"}, "malformed request body\n"
        verdict = envelopes.check(body)
        if verdict == envelopes.IGNORE:
            return 200, {"content-type": "text/plain"}, ""
        if verdict != envelopes.OK:
            log.warning("refused a signed request from Slack: %s", verdict)
            return 400, {"content-type": "text/plain"}, f"{verdict}\n"
        response = self.bolt.dispatch(
            BoltRequest(
                body=raw,
                query=environ.get("QUERY_STRING", ""),
                headers={k: [v] for k, v in headers.items()},
                # Bolt logs through the context's logger while it builds that context (a view
                # submission with several response_urls), before it would have set one.
                context={"logger": self.bolt.logger},
            )
        )
        out_headers = {k: v[0] if isinstance(v, list) else str(v) for k, v in response.headers.items() if v}
        return response.status, out_headers, response.body


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


class HttpServer:
    """waitress in a background thread, so the process can also run Socket Mode or a scheduler.

    The serving loop runs in short slices and shuts itself down when asked: closing waitress's sockets
    from another thread while it sits in select() fails with EBADF.
    """

    def __init__(self, app: EmberWSGI, *, host: str, port: int, threads: int = 8) -> None:
        self._server: Any = create_server(
            app, host=host, port=port, threads=threads, ident="ember", connection_limit=CONNECTION_LIMIT
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ember-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    def start(self) -> None:
        self._thread.start()
        log.info("listening on http://%s:%d", self.host, self.port)

    def _serve(self) -> None:
        server = self._server
        while not self._stopping.is_set():
            server.asyncore.loop(timeout=0.5, map=server._map, count=1)
        server.task_dispatcher.shutdown()
        server.asyncore.close_all(server._map)

    def stop(self) -> None:
        self._stopping.set()
        if not self._thread.is_alive():  # never started: close the listening socket ourselves
            self._server.task_dispatcher.shutdown()
            self._server.asyncore.close_all(self._server._map)
            return
        self._server.pull_trigger()
        self._thread.join(timeout=15)
