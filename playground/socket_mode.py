"""Socket Mode: `apps.connections.open` plus the WebSocket server it points at.

Slack hands an app-level token (xapp-...) a single-use WebSocket URL; on
connect it sends `hello`, then delivers envelopes (`events_api`,
`slash_commands`, `interactive`) that the app must acknowledge by sending back
`{"envelope_id": ...}`. This module plays that side with a minimal RFC 6455
server (stdlib only): the opening handshake, unfragmented text frames out,
masked frames in, ping/pong and close. Tests push envelopes and wait for acks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .methods import Response, SlackError
from .workspace import Workspace

CONNECT_METHOD = "apps.connections.open"
LINK_PATH = "/link/"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_TEXT, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0
_CLOSE_NORMAL, _CLOSE_PROTOCOL_ERROR = 1000, 1002
_MAX_HANDSHAKE_BYTES = 16 * 1024
# Slack pings its Socket Mode clients. slack_sdk's client only notices it was closed when a read
# returns, so frequent pings also let its close() finish at once instead of after a 3 s read timeout.
PING_INTERVAL = 0.25

Envelope = dict[str, Any]


class ProtocolError(Exception):
    """The peer broke RFC 6455; the connection is closed with 1002."""


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
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._tickets: set[str] = set()
        self._open: list[_Connection] = []
        self._connects = 0
        self._acks: list[Ack] = []
        self.errors: list[str] = []  # protocol violations by the app, for tests to surface

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        # Polling accept keeps stop() prompt without relying on platform-specific wake-ups.
        listener.settimeout(0.05)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="playground-socket-mode", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._changed:
            connections = list(self._open)
        for connection in connections:
            connection.abort()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("Socket Mode is not started")
        return int(self._listener.getsockname()[1])

    # -- apps.connections.open ------------------------------------------

    def connections_open(self, token: str) -> Response:
        """The Web API method; it takes only an app-level token."""
        if token not in self.app_tokens:
            # A bot or user token is a real token of the wrong type; anything else is unknown.
            raise SlackError("not_allowed_token_type" if token in self.ws.tokens else "invalid_auth")
        ticket = uuid.uuid4().hex
        with self._changed:
            self._tickets.add(ticket)
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}{LINK_PATH}?ticket={ticket}&app_id={self.ws.app_id}"}

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
        self._wait_for_connection(timeout).send_text(json.dumps(envelope))
        return str(envelope["envelope_id"])

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does when it recycles a connection."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "playground"}}
        self._wait_for_connection(10.0).send_text(json.dumps(message))

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

    def _wait_for_connection(self, timeout: float) -> _Connection:
        with self._changed:
            if not self._changed.wait_for(lambda: self._open, timeout):
                raise AssertionError(f"no Socket Mode connection open after {timeout}s")
            return self._open[-1]

    # -- connections -----------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        next_ping = time.monotonic() + PING_INTERVAL
        while not self._stopping.is_set():
            if time.monotonic() >= next_ping:
                self._ping_all()
                next_ping = time.monotonic() + PING_INTERVAL
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            threading.Thread(target=self._serve, args=(sock,), name="playground-ws", daemon=True).start()

    def _ping_all(self) -> None:
        with self._changed:
            connections = list(self._open)
        for connection in connections:
            # A failed ping means a dead connection; its reader thread sees that too and cleans up.
            with contextlib.suppress(OSError):
                connection.ping()

    def _serve(self, sock: socket.socket) -> None:
        connection = _Connection(sock)
        try:
            if self._handshake(connection):
                connection.run(self._on_text)
        except ProtocolError as err:
            self._record_error(f"protocol error: {err}")
            connection.close(_CLOSE_PROTOCOL_ERROR, str(err)[:100])
        except OSError:
            pass  # the app dropped the connection, as slack_sdk does on close()
        finally:
            with self._changed:
                if connection in self._open:
                    self._open.remove(connection)
                self._changed.notify_all()
            connection.abort()

    def _handshake(self, connection: _Connection) -> bool:
        request = connection.read_handshake()
        key = _check_upgrade(request)
        ticket = parse_qs(urlsplit(request.target).query).get("ticket", [""])[0]
        with self._changed:
            valid = urlsplit(request.target).path == LINK_PATH and ticket in self._tickets
            self._tickets.discard(ticket)  # a URL is good for one connection
        if key is None or not valid:
            status = "400 Bad Request" if key is None else "401 Unauthorized"
            connection.sock.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            return False
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        connection.sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        connection.upgraded = True
        with self._changed:
            self._open.append(connection)
            self._connects += 1
            num_connections = len(self._open)
            self._changed.notify_all()
        hello = {
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {"host": "playground", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.ws.app_id},
        }
        connection.send_text(json.dumps(hello))
        return True

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._record_error(f"not JSON: {text[:200]!r}")
            return
        if not isinstance(message, dict) or not isinstance(message.get("envelope_id"), str):
            self._record_error(f"not an ack: {text[:200]!r}")
            return
        payload = message.get("payload")
        with self._changed:
            self._acks.append(Ack(message["envelope_id"], payload if isinstance(payload, dict) else None, time.time()))
            self._changed.notify_all()

    def _record_error(self, error: str) -> None:
        with self._changed:
            self.errors.append(error)


@dataclass(frozen=True)
class _Handshake:
    verb: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names


def _check_upgrade(request: _Handshake) -> str | None:
    """The client's Sec-WebSocket-Key if this is a valid RFC 6455 opening handshake, else None."""
    headers = request.headers
    connection_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    key = headers.get("sec-websocket-key", "")
    try:
        key_ok = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        key_ok = False
    valid = (
        request.verb == "GET"
        and request.version == "HTTP/1.1"
        and headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in connection_tokens
        and headers.get("sec-websocket-version") == "13"
        and key_ok
    )
    return key if valid else None


class _Connection:
    """One server-side WebSocket: frames in (masked) and out (unmasked)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self._send_lock = threading.Lock()
        self._closed = False
        self.upgraded = False  # frames may flow only after the 101 response

    def read_handshake(self) -> _Handshake:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HANDSHAKE_BYTES:
                raise ProtocolError("handshake too long")
            self._fill()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            raise ProtocolError(f"bad request line {request_line!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return _Handshake(parts[0], parts[1], parts[2], headers)

    def run(self, on_text: Callable[[str], None]) -> None:
        """Read frames until the peer closes: answer pings, echo closes, hand text to `on_text`."""
        fragments: list[bytes] = []
        while True:
            fin, opcode, data = self._read_frame()
            if opcode == _PING:
                self._send_frame(_PONG, data)
            elif opcode == _PONG:
                continue
            elif opcode == _CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else _CLOSE_NORMAL
                self.close(code)
                return
            elif opcode in (_TEXT, _CONTINUATION):
                if (opcode == _TEXT) == bool(fragments):
                    raise ProtocolError("unexpected continuation frame")
                fragments.append(data)
                if fin:
                    text, fragments = b"".join(fragments), []
                    try:
                        on_text(text.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise ProtocolError("text frame is not UTF-8") from None
            else:
                raise ProtocolError(f"unsupported opcode {opcode:#x}")

    def send_text(self, text: str) -> None:
        self._send_frame(_TEXT, text.encode("utf-8"))

    def ping(self) -> None:
        self._send_frame(_PING, b"playground")

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame (if the handshake is done) and drop the connection."""
        if self.upgraded:
            with contextlib.suppress(OSError):
                self._send_frame(_CLOSE, struct.pack("!H", code) + reason.encode("utf-8"))
        self.abort()

    def abort(self) -> None:
        with self._send_lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        # Servers never mask (RFC 6455, section 5.1); one sendall keeps a frame whole on the wire.
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        with self._send_lock:
            if self._closed:
                raise OSError("connection closed")
            self.sock.sendall(header + payload)

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        fin, opcode, masked, length = bool(first & 0x80), first & 0x0F, bool(second & 0x80), second & 0x7F
        if first & 0x70:
            raise ProtocolError("reserved bits set without an extension")
        if not masked:
            raise ProtocolError("client frames must be masked")
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        if opcode >= _CLOSE and (length > 125 or not fin):
            raise ProtocolError("control frames must be short and unfragmented")
        mask = self._read(4)
        data = self._read(length)
        return fin, opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("peer closed the connection")
        self._buffer += chunk
