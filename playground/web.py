"""`PlaygroundWeb`: the WSGI app behind the browser playground (a local, Slack-like workspace).

Ember's waitress server answers /slack/events, /healthz and /metrics itself and hands every other
path here:

    GET  /                              the page (static/index.html)
    GET  /static/<name>                 a file of playground/static (no sub-folders)
    GET  /playground/api/directory?user=            GET /playground/api/people
    GET  /playground/api/history?user=&channel=     GET /playground/api/thread?user=&channel=&ts=
    GET  /playground/api/views?user=                GET /playground/api/status
    GET  /playground/api/home?user=                 GET /playground/api/agent?user=   (Ember's pane)
    POST /playground/api/send | click | submit | close_view | react | train    (JSON object bodies)
    POST /playground/api/opened | prompt | open_home | home_click | shortcut   (Ember's pane, Home, menus)
    GET  /playground/events             Server-Sent Events: `change` with the workspace revision

Every API answer is JSON. Bad input is a 4xx naming the problem: 400 for a body that is not a JSON
object or a missing or mistyped field, 403/404 when the playground refuses a read (raising, or
answering {"ok": false, "error": "channel_not_found"}), 413 for a body over the limit, 405 for the
wrong method. A refused write (send's msg_too_long, submit's errors) is answered 200 as it came.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
API_PREFIX = "/playground/api/"
EVENTS_PATH = "/playground/events"
MAX_BODY_BYTES = 1 << 20
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_TEXT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}

Json = Any
Args = dict[str, Any]


class PlaygroundAPI(Protocol):
    """What `PlaygroundWeb` calls (playground.app.Playground); parameters are positional-only here."""

    def directory(self, user: str, /) -> Json: ...
    def people(self) -> Json: ...
    def history(self, user: str, channel: str, /) -> Json: ...
    def thread(self, user: str, channel: str, ts: str, /) -> Json: ...
    def views(self, user: str, /) -> Json: ...
    def home(self, user: str, /) -> Json: ...
    def agent(self, user: str, /) -> Json: ...
    def open_home(self, user: str, /) -> Json: ...
    def opened(self, user: str, channel: str, /) -> Json: ...
    def prompt(self, user: str, channel: str, message: str, /) -> Json: ...
    def home_click(self, user: str, action: dict[str, Any], /) -> Json: ...
    def shortcut(self, user: str, channel: str, message_ts: str, callback_id: str, /) -> Json: ...
    def status(self) -> Json: ...
    def train(self) -> Json: ...
    def send(self, user: str, channel: str, text: str, thread_ts: str | None = None, /) -> Json: ...
    def click(self, user: str, channel: str, message_ts: str, action: dict[str, Any], /) -> Json: ...
    def submit(self, user: str, view_id: str, values: dict[str, Any], /) -> Json: ...
    def close_view(self, user: str, view_id: str, /) -> Json: ...
    def react(self, user: str, channel: str, ts: str, name: str, /) -> Json: ...
    def wait(self, seen: int, timeout: float, /) -> int: ...


_FORBIDDEN = frozenset({"forbidden", "not_allowed", "access_denied", "not_in_channel", "restricted_action"})


class HttpError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"ok": False, "error": error, "message": message, **extra}


# An endpoint: the fields it needs ((name, type) pairs; a type of (str, None) makes it optional)
# and what to call with them.
Endpoint = tuple[tuple[tuple[str, Any], ...], Callable[[PlaygroundAPI, Args], Json]]
_OPTIONAL_STR = (str, type(None))

READS: dict[str, Endpoint] = {
    "directory": ((("user", str),), lambda p, a: p.directory(a["user"])),
    "people": ((), lambda p, a: p.people()),
    "history": ((("user", str), ("channel", str)), lambda p, a: p.history(a["user"], a["channel"])),
    "thread": (
        (("user", str), ("channel", str), ("ts", str)),
        lambda p, a: p.thread(a["user"], a["channel"], a["ts"]),
    ),
    "views": ((("user", str),), lambda p, a: p.views(a["user"])),
    "home": ((("user", str),), lambda p, a: p.home(a["user"])),
    "agent": ((("user", str),), lambda p, a: p.agent(a["user"])),
    "status": ((), lambda p, a: p.status()),
}
WRITES: dict[str, Endpoint] = {
    "send": (
        (("user", str), ("channel", str), ("text", str), ("thread_ts", _OPTIONAL_STR)),
        lambda p, a: p.send(a["user"], a["channel"], a["text"], a.get("thread_ts") or None),
    ),
    "click": (
        (("user", str), ("channel", str), ("message_ts", str), ("action", dict)),
        lambda p, a: p.click(a["user"], a["channel"], a["message_ts"], a["action"]),
    ),
    "submit": (
        (("user", str), ("view_id", str), ("values", dict)),
        lambda p, a: p.submit(a["user"], a["view_id"], a["values"]),
    ),
    "close_view": ((("user", str), ("view_id", str)), lambda p, a: p.close_view(a["user"], a["view_id"])),
    "react": (
        (("user", str), ("channel", str), ("ts", str), ("name", str)),
        lambda p, a: p.react(a["user"], a["channel"], a["ts"], a["name"]),
    ),
    "train": ((), lambda p, a: p.train()),
    "open_home": ((("user", str),), lambda p, a: p.open_home(a["user"])),
    "opened": ((("user", str), ("channel", str)), lambda p, a: p.opened(a["user"], a["channel"])),
    "prompt": (
        (("user", str), ("channel", str), ("message", str)),
        lambda p, a: p.prompt(a["user"], a["channel"], a["message"]),
    ),
    "home_click": ((("user", str), ("action", dict)), lambda p, a: p.home_click(a["user"], a["action"])),
    "shortcut": (
        (("user", str), ("channel", str), ("message_ts", str), ("callback_id", str)),
        lambda p, a: p.shortcut(a["user"], a["channel"], a["message_ts"], a["callback_id"]),
    ),
}


class PlaygroundWeb:
    """The playground's page, its JSON API and its event stream, as one WSGI application."""

    def __init__(
        self,
        playground: PlaygroundAPI,
        *,
        max_body: int = MAX_BODY_BYTES,
        keepalive_s: float = 15.0,
        tick_s: float = 1.0,
    ) -> None:
        self.playground = playground
        self.max_body = max_body
        self.keepalive_s = keepalive_s
        # Streams wait in short slices so close() ends them within a tick (waitress gives its worker
        # threads a few seconds on shutdown).
        self.tick_s = min(tick_s, keepalive_s)
        self._closing = threading.Event()

    def close(self) -> None:
        """End the open event streams (within `tick_s`) and refuse new ones."""
        self._closing.set()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/") or "/"
        try:
            if path == EVENTS_PATH:
                _allow(method, "GET")
                if self._closing.is_set():
                    raise HttpError(503, "stopping", "the playground is stopping")
                start_response(
                    "200 OK",
                    [
                        ("Content-Type", "text/event-stream; charset=utf-8"),
                        ("Cache-Control", "no-cache"),
                        ("X-Accel-Buffering", "no"),
                    ],
                )
                return self._events()
            if path == "/" or path.startswith("/static/"):
                _allow(method, "GET", "HEAD")
                content_type, body = _static("index.html" if path == "/" else path[len("/static/") :])
                headers = [("Content-Type", content_type), ("Cache-Control", "no-cache")]
                return _respond(start_response, 200, headers, body, head=method == "HEAD")
            if path.startswith(API_PREFIX):
                return _json(start_response, 200, self._api(environ, method, path[len(API_PREFIX) :]))
            raise HttpError(404, "not_found", f"no such path: {path}")
        except HttpError as err:
            extra = [("Allow", err.body["allow"])] if "allow" in err.body else []
            return _json(start_response, err.status, err.body, extra)

    # -- the API -------------------------------------------------------------------------------

    def _api(self, environ: WSGIEnvironment, method: str, name: str) -> Json:
        if name in READS:
            _allow(method, "GET")
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            fields, call = READS[name]
            args = _check({key: values[-1] for key, values in query.items()}, fields)
        elif name in WRITES:
            _allow(method, "POST")
            fields, call = WRITES[name]
            args = _check(self._body(environ), fields)
        else:
            raise HttpError(404, "unknown_method", f"no such API method: {name}")
        try:
            result = call(self.playground, args)
        except PermissionError as err:
            raise HttpError(403, "forbidden", str(err) or "not allowed") from err
        except LookupError as err:  # KeyError, IndexError: no such channel, message or view
            raise HttpError(404, "not_found", _reason(err) or "not found") from err
        except (ValueError, TypeError) as err:
            raise HttpError(400, "invalid_arguments", str(err) or "invalid arguments") from err
        if name in READS and fields and isinstance(result, dict) and result.get("ok") is False:
            # A read the playground refused ({"ok": false, "error": "channel_not_found", ...}).
            error = str(result.get("error") or "")
            status = 404 if error.endswith("not_found") else 403 if error in _FORBIDDEN else 400
            refused = HttpError(status, error or "refused", str(result.get("message") or error))
            refused.body = {**refused.body, **result}
            raise refused
        return result

    def _body(self, environ: WSGIEnvironment) -> Args:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HttpError(400, "bad_request", "Content-Length is not a number") from None
        if length > self.max_body:
            raise HttpError(413, "body_too_large", f"the request body is over {self.max_body} bytes")
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "invalid_json", "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "invalid_json", "the request body is not a JSON object")
        return body

    # -- the event stream ----------------------------------------------------------------------

    def _events(self) -> Iterator[bytes]:
        """`change` at once (the client refreshes on (re)connecting), then on every revision change."""
        yield b"retry: 2000\n\n"
        revision = -1
        beat = time.monotonic()
        try:
            while not self._closing.is_set():
                latest = self.playground.wait(revision, self.tick_s)
                now = time.monotonic()
                if latest != revision:
                    revision, beat = latest, now
                    yield f"event: change\ndata: {json.dumps({'revision': latest})}\n\n".encode()
                elif now - beat >= self.keepalive_s:
                    beat = now
                    yield b": keepalive\n\n"
        except Exception:  # not GeneratorExit: a client that went away just closes the generator
            log.exception("playground event stream failed")


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        message = f"use {' or '.join(allowed)}"
        raise HttpError(405, "method_not_allowed", message, allow=", ".join(allowed))


def _check(args: Args, fields: tuple[tuple[str, Any], ...]) -> Args:
    for name, kind in fields:
        optional = kind is _OPTIONAL_STR
        if name not in args and not optional:
            raise HttpError(400, "missing_field", f"missing field: {name}", field=name)
        if name in args and not isinstance(args[name], kind):
            expected = {str: "a string", dict: "an object"}.get(kind, "a string or null")
            raise HttpError(400, "invalid_field", f"field {name} must be {expected}", field=name)
    return args


def _reason(err: LookupError) -> str:
    # str(KeyError("x")) is "'x'"; its argument reads better.
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def _static(name: str) -> tuple[str, bytes]:
    """A file of STATIC_DIR by its bare name: anything else (sub-paths, dot files, ..) is 404."""
    if not _STATIC_NAME.fullmatch(name) or not (STATIC_DIR / name).is_file():
        raise HttpError(404, "not_found", f"no such file: {name}")
    path = STATIC_DIR / name
    content_type = _TEXT_TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return content_type, path.read_bytes()


def _json(
    start_response: StartResponse, status: int, body: Json, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *(headers or [])]
    return _respond(start_response, status, headers, payload)


def _respond(
    start_response: StartResponse, status: int, headers: list[tuple[str, str]], body: bytes, *, head: bool = False
) -> list[bytes]:
    start_response(f"{status} {HTTPStatus(status).phrase}", [*headers, ("Content-Length", str(len(body)))])
    return [] if head else [body]


__all__ = ["PlaygroundAPI", "PlaygroundWeb"]
