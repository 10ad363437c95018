"""Socket Mode: `apps.connections.open` plus the WebSocket server it points at.

Slack hands an app-level token (xapp-...) a single-use WebSocket URL; on
connect it sends `hello`, then delivers envelopes (`events_api`,
`slash_commands`, `interactive`) that the app must acknowledge by sending back
`{"envelope_id": ...}`. This module plays that side on the `websockets`
library's threaded server, which does the RFC 6455 work (handshake, framing,
ping/pong, close); here are only the ticket check, `hello`, `disconnect`, and
the envelopes and acks. Tests push envelopes and wait for acks; frames the app
gets wrong end its connection and are kept in `errors`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.http11 import Response as HttpResponse
from websockets.sync.server import Server, ServerConnection, serve

from .methods import Response, SlackError
from .workspace import Workspace

CONNECT_METHOD = "apps.connections.open"
LINK_PATH = "/link/"
# Slack pings its Socket Mode clients. slack_sdk's client only notices it was closed when a read
# returns, so frequent pings also let its close() finish at once instead of after a 3 s read timeout.
PING_INTERVAL = 0.25
# How long a close waits for the app's answer: an app that never answers must not stall stop() for long.
CLOSE_TIMEOUT = 1.0

Envelope = dict[str, Any]


@dataclass(frozen=True)
class Ack:
    """What the app sent back for one envelope."""

    envelope_id: str
    payload: dict[str, Any] | None
    at: float


class SocketMode:
    """Slack's Socket Mode side of the fake: tickets, connections, envelopes and acks."""

    def __init__(self, ws: Workspace, app_tokens: set[str]) -> None:
        self.ws = ws
        self.app_tokens = app_tokens
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._tickets: set[str] = set()
        self._open: list[ServerConnection] = []
        self._connects = 0
        self._acks: list[Ack] = []
        self.errors: list[str] = []  # protocol violations by the app, for tests to surface
        # The port the URLs handed out point at, when something (a relay) stands in front of the server.
        self.url_port: int | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        # Pings keep slack_sdk reading; no ping timeout, so a slow app is not cut off, only a broken one.
        self._server = serve(
            self._serve,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            ping_interval=PING_INTERVAL,
            ping_timeout=None,
            close_timeout=CLOSE_TIMEOUT,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="playground-socket-mode", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close open connections (1001 going away) and wait for their handlers."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("Socket Mode is not started")
        return int(self._server.socket.getsockname()[1])

    # -- apps.connections.open ------------------------------------------

    def connections_open(self, token: str) -> Response:
        """The Web API method; it takes only an app-level token."""
        if token not in self.app_tokens:
            # A bot or user token is a real token of the wrong type; anything else is unknown.
            raise SlackError("not_allowed_token_type" if token in self.ws.tokens else "invalid_auth")
        ticket = uuid.uuid4().hex
        with self._changed:
            self._tickets.add(ticket)
        port = self.url_port or self.port
        return {"ok": True, "url": f"ws://127.0.0.1:{port}{LINK_PATH}?ticket={ticket}&app_id={self.ws.app_id}"}

    # -- what Slack sends ------------------------------------------------

    def send_event(self, body: Envelope, retry_attempt: int = 0, retry_reason: str = "") -> str:
        """Deliver an `event_callback` body (as `LocalSlack.mention` builds) over the socket."""
        envelope = {
            "type": "events_api",
            "payload": body,
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        return self.send(envelope)

    def send_command(self, fields: dict[str, str]) -> str:
        """Deliver slash-command fields (as `LocalSlack.command_payload` builds); the ack may carry a response."""
        return self.send({"type": "slash_commands", "payload": dict(fields), "accepts_response_payload": True})

    def send_interaction(self, payload: dict[str, Any]) -> str:
        """Deliver an interaction payload (as `LocalSlack.block_action` builds)."""
        # Slack takes a response in the ack only where it would over HTTP (view submissions, suggestions).
        accepts = payload.get("type") in ("view_submission", "block_suggestion")
        return self.send({"type": "interactive", "payload": payload, "accepts_response_payload": accepts})

    def send(self, envelope: Envelope, timeout: float = 10.0) -> str:
        """Send one envelope on the newest open connection, adding an envelope_id if it has none."""
        envelope = {"envelope_id": str(uuid.uuid4()), **envelope}
        self._wait_for_connection(timeout).send(json.dumps(envelope))
        return str(envelope["envelope_id"])

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does when it recycles a connection."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "playground"}}
        self._wait_for_connection(10.0).send(json.dumps(message))

    # -- what the app sent -----------------------------------------------

    @property
    def acks(self) -> list[Ack]:
        with self._changed:
            return list(self._acks)

    @property
    def connects(self) -> int:
        """How many WebSocket connections completed the handshake so far."""
        with self._changed:
            return self._connects

    @property
    def open_connections(self) -> int:
        with self._changed:
            return len(self._open)

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        with self._changed:
            found = self._changed.wait_for(lambda: self._ack(envelope_id), timeout)
            if not found:
                raise AssertionError(f"no ack for envelope {envelope_id} in {timeout}s; acks: {self._acks}")
            return found

    def wait_for_connects(self, count: int, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._connects >= count and self._open, timeout):
                raise AssertionError(f"{self._connects} connection(s) after {timeout}s, expected {count}")

    def _ack(self, envelope_id: str) -> Ack | None:
        return next((a for a in self._acks if a.envelope_id == envelope_id), None)

    def _wait_for_connection(self, timeout: float) -> ServerConnection:
        with self._changed:
            if not self._changed.wait_for(lambda: self._open, timeout):
                raise AssertionError(f"no Socket Mode connection open after {timeout}s")
            return self._open[-1]

    # -- connections -----------------------------------------------------

    def _check_ticket(self, connection: ServerConnection, request: Request) -> HttpResponse | None:
        """Refuse (401) a URL that was not handed out or was used already; the library checks the rest (400)."""
        target = urlsplit(request.path)
        ticket = parse_qs(target.query).get("ticket", [""])[0]
        with self._changed:
            valid = target.path == LINK_PATH and ticket in self._tickets
            self._tickets.discard(ticket)  # a URL is good for one connection
        return None if valid else connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or used Socket Mode URL\n")

    def _serve(self, connection: ServerConnection) -> None:
        """One open connection: send `hello`, then record acks until the app goes away."""
        try:
            with self._changed:
                num_connections = len(self._open) + 1
            hello = {
                "type": "hello",
                "num_connections": num_connections,
                "debug_info": {"host": "playground", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.ws.app_id},
            }
            connection.send(json.dumps(hello))  # before anything else can be sent on it
            with self._changed:
                self._open.append(connection)
                self._connects += 1
                self._changed.notify_all()
            for message in connection:
                self._on_message(message)
        except ConnectionClosed as closed:
            # The app dropping the socket is normal (slack_sdk's close() does); a close the library
            # sent with an error code, unanswered, means the app broke RFC 6455 (1002, 1007, 1009).
            sent = closed.sent
            if (
                sent is not None
                and closed.rcvd is None
                and sent.code not in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY)
            ):
                self._record_error(f"protocol error: {sent.code} {sent.reason}")
        finally:
            with self._changed:
                if connection in self._open:
                    self._open.remove(connection)
                self._changed.notify_all()

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._record_error(f"binary message, not JSON text: {message[:200]!r}")
            return
        try:
            ack = json.loads(message)
        except ValueError:
            self._record_error(f"not JSON: {message[:200]!r}")
            return
        if not isinstance(ack, dict) or not isinstance(ack.get("envelope_id"), str):
            self._record_error(f"not an ack: {message[:200]!r}")
            return
        payload = ack.get("payload")
        with self._changed:
            self._acks.append(Ack(ack["envelope_id"], payload if isinstance(payload, dict) else None, time.time()))
            self._changed.notify_all()

    def _record_error(self, error: str) -> None:
        with self._changed:
            self.errors.append(error)
