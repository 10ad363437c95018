"""Routes requests to Web API handlers or the response_url endpoint, applying
what Slack applies around every method: argument parsing, authentication,
injected faults, and (for the tests) recording.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from . import response_urls
from .calls import ApiCall, CallLog, FaultPlan
from .methods import METHODS, CallContext, Response, SlackError
from .transport import HttpRequest, HttpResponse
from .workspace import Workspace

API_PATH = "/api/"
RESPONSE_URL_METHOD = "response_url"
# Arguments that form-encoded clients send as JSON strings.
_JSON_ARGS = frozenset(
    {"blocks", "attachments", "metadata", "prompts", "chunks", "loading_messages", "unfurls", "view"}
    | {"user_auth_blocks"}
)
Route = Callable[[HttpRequest, str, dict[str, Any], "str | None"], HttpResponse]
# A method that takes an app-level token (xapp-...) instead of a bot or user token.
AppLevelHandler = Callable[[str], Response]


class Dispatcher:
    """The fake's request handler (an `App` for `transport.BackgroundServer`)."""

    def __init__(self, ws: Workspace, calls: CallLog, faults: FaultPlan) -> None:
        self.ws = ws
        self.calls = calls
        self.faults = faults
        self.base_url = ""
        self.errors: list[str] = []  # handler crashes, so tests can surface them
        self.app_level: dict[str, AppLevelHandler] = {}  # e.g. apps.connections.open (Socket Mode)
        self.app_tokens: set[str] = set()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PATH):
            return self._record(request, request.path.removeprefix(API_PATH), self._web_api)
        if request.path.startswith(response_urls.RESPONSE_PATH):
            return self._record(request, RESPONSE_URL_METHOD, self._response_url)
        return HttpResponse(404, {"ok": False, "error": "not_found"})

    def _record(self, request: HttpRequest, method: str, route: Route) -> HttpResponse:
        """Run one call through faults and `handler`, and log it with its outcome."""
        at = time.monotonic()
        try:
            args, token = _parse_args(request)
        except SlackError as err:
            args, token, response = {}, None, HttpResponse(err.status, err.body())
        else:
            response = self._fault(method) or route(request, method, args, token)
        self.calls.record(ApiCall(method, args, token, at, response.status, response.body))
        return response

    def _fault(self, method: str) -> HttpResponse | None:
        fault = self.faults.take(method)
        if fault is None:
            return None
        return HttpResponse(fault.status, {"ok": False, "error": fault.error}, fault.headers())

    def _web_api(self, request: HttpRequest, method: str, args: dict[str, Any], token: str | None) -> HttpResponse:
        handler = METHODS.get(method)
        app_level = self.app_level.get(method)
        if handler is None and app_level is None:
            return HttpResponse(200, {"ok": False, "error": "unknown_method", "req_method": method})
        if token is None:
            return HttpResponse(200, {"ok": False, "error": "not_authed"})
        if app_level is not None:
            return self._guarded(lambda: app_level(token))
        if handler is None or token in self.app_tokens:
            return HttpResponse(200, {"ok": False, "error": "not_allowed_token_type"})
        actor = self.ws.tokens.get(token)
        if actor is None:
            return HttpResponse(200, {"ok": False, "error": "invalid_auth"})
        return self._guarded(lambda: handler(CallContext(self.ws, args, actor, self.base_url)))

    def _response_url(self, request: HttpRequest, method: str, args: dict[str, Any], token: str | None) -> HttpResponse:
        response_id = request.path.removeprefix(response_urls.RESPONSE_PATH)
        args["response_id"] = response_id
        body = {k: v for k, v in args.items() if k != "response_id"}
        return self._guarded(lambda: response_urls.handle(self.ws, response_id, body))

    def _guarded(self, run: Callable[[], Response]) -> HttpResponse:
        """Run a handler under the workspace lock, mapping errors to responses."""
        try:
            with self.ws.lock:
                response = HttpResponse(200, run())
            self.ws.touch()  # ephemerals, streams closing and the like change what a page shows
            return response
        except SlackError as err:
            return HttpResponse(err.status, err.body())
        except Exception:  # a fake bug must not look like a Slack answer
            self.errors.append(traceback.format_exc())
            return HttpResponse(500, {"ok": False, "error": "fake_internal_error"})


def _parse_args(request: HttpRequest) -> tuple[dict[str, Any], str | None]:
    """Merge query, body and token the way Slack reads them."""
    args: dict[str, Any] = _decode_json_args(dict(parse_qsl(request.query, keep_blank_values=True)))
    args.update(_body_args(request))
    auth = request.headers.get("authorization", "")
    form_token = args.pop("token", None)
    token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else form_token
    return args, (str(token) if token else None)


def _body_args(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    kind = request.content_type
    if kind == "application/json":
        return _json_body(request.body)
    if kind == "multipart/form-data":
        return _decode_json_args(_multipart_body(request))
    return _decode_json_args(dict(parse_qsl(request.body.decode(), keep_blank_values=True)))


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise SlackError("invalid_json") from None
    if not isinstance(parsed, dict):
        raise SlackError("invalid_json")
    return parsed


def _multipart_body(request: HttpRequest) -> dict[str, Any]:
    """Text parts as str, file parts as bytes (slack_sdk uses multipart for uploads)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        fields[name] = payload if part.get_filename() else payload.decode()
    return fields


def _decode_json_args(args: dict[str, Any]) -> dict[str, Any]:
    """Form clients send structured args (blocks, ...) as JSON strings; decode them."""
    for name in _JSON_ARGS & args.keys():
        if isinstance(args[name], str) and args[name]:
            try:
                args[name] = json.loads(args[name])
            except ValueError:
                raise SlackError("invalid_arguments", arg=name) from None
    return args
