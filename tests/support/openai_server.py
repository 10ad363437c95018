"""The tests' stand-in for vLLM: a small OpenAI-compatible HTTP server in front of any `LLM`.

It speaks the part of the API vLLM speaks that Ember uses, so tests can run a real model (Ember's
local engine, or transformers itself) behind the same wire format as a vLLM cluster:

    server = serve_openai(engine, host="0.0.0.0", port=8000)
    ...                                  # OpenAIEngine(server.url, model=engine.version) talks to it
    server.stop()

- `POST /v1/chat/completions`: JSON, or SSE with `"stream": true` (`choices[0].delta.content`
  chunks, a chunk with `finish_reason`, a `usage` chunk when `stream_options.include_usage`, then
  `data: [DONE]`). Answers are whatever the LLM does (Ember's engine is greedy); sampling
  parameters are accepted and ignored. `tools` reach `llm.stream(..., tools=...)`; the answer's
  `Completion.tool_calls` go out as OpenAI `tool_calls` (streamed as fragments by `index`, the
  arguments a JSON string in pieces, as vLLM's tool parsers send them; `finish_reason: "tool_calls"`).
  `model` may be left out, else it must be the LLM's current version (404 otherwise, as vLLM does).
  A client that disconnects cancels its request.
- `GET /v1/models`: the current version, with `max_model_len` when the LLM has `context_window`.
- `POST /v1/load_lora_adapter` `{"lora_name", "lora_path"}`: `llm.swap(lora_path, version=lora_name)`.
- Errors are OpenAI-style JSON: `{"error": {"message", "type", "param", "code"}}`.

Standard library only (ThreadingHTTPServer): one thread per connection.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from models.base import LLM, Completion, Message, SwapError, TokenStream
from models.prompt import PromptTooLong

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class OpenAIServer:
    """A running server; `url` is its base (`http://host:port`), `stop()` ends it."""

    def __init__(self, httpd: _HTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting, cancel the requests in flight and close every connection."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_everything()
        self._thread.join()

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_openai(
    llm: LLM,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    default_max_tokens: int = 256,
) -> OpenAIServer:
    """Serve `llm` on `host:port` (0: any free port) in a background thread.

    With `api_key`, requests must carry `Authorization: Bearer <api_key>`.
    """
    httpd = _HTTPServer((host, port), _Handler, llm=llm, api_key=api_key, default_max_tokens=default_max_tokens)
    thread = threading.Thread(
        target=httpd.serve_forever, args=(0.05,), name=f"openai-server-{httpd.server_address[1]}", daemon=True
    )
    thread.start()
    server = OpenAIServer(httpd, thread)
    log.info("OpenAI-compatible API for %s at %s/v1", llm.version, server.url)
    return server


# --- internals --------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        llm: LLM,
        api_key: str | None,
        default_max_tokens: int,
    ) -> None:
        self.llm = llm
        self.api_key = api_key
        self.default_max_tokens = default_max_tokens
        self.started = int(time.time())
        self.lock = threading.Lock()
        self.streams: set[TokenStream] = set()
        self.connections: set[socket.socket] = set()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.exception("error serving %s", client_address)

    def close_everything(self) -> None:
        with self.lock:
            streams, connections = list(self.streams), list(self.connections)
        for stream in streams:
            stream.cancel()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _BadRequest(Exception):
    def __init__(
        self, message: str, *, status: int = 400, kind: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


class _ClientGone(Exception):
    pass


@dataclass(frozen=True)
class _ChatRequest:
    messages: list[Message]
    max_tokens: int
    stop: list[str]
    stream: bool
    include_usage: bool
    tools: list[dict[str, Any]] | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EmberOpenAI/1"
    timeout = 300  # idle keep-alive connections are dropped after this long
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            self._authorize()
            if path == "/v1/models":
                self._send_json(200, self._models())
            elif path in ("/health", "/healthz"):
                self._send_json(200, {"status": "ok"})
            else:
                raise _BadRequest(f"no route GET {path}", status=404, kind="not_found_error")
        except _BadRequest as e:
            self._send_error(e)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            if path not in ("/v1/chat/completions", "/v1/load_lora_adapter"):
                self.close_connection = True  # its body is left unread
                raise _BadRequest(f"no route POST {path}", status=404, kind="not_found_error")
            body = self._read_json()
            self._authorize()
            if path == "/v1/chat/completions":
                self._chat(body)
            else:
                self._load_lora(body)
        except _BadRequest as e:
            self._send_error(e)
        except _ClientGone:
            self.close_connection = True

    # --- endpoints ----------------------------------------------------------------------------

    def _models(self) -> dict[str, Any]:
        version = self.server.llm.version
        card: dict[str, Any] = {
            "id": version,
            "object": "model",
            "created": self.server.started,
            "owned_by": "ember",
            "root": version,
            "parent": None,
        }
        window = getattr(self.server.llm, "context_window", None)
        if isinstance(window, int) and window > 0:
            card["max_model_len"] = window
        return {"object": "list", "data": [card]}

    def _load_lora(self, body: dict[str, Any]) -> None:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not name:
            raise _BadRequest("lora_name must be a non-empty string", param="lora_name")
        if not isinstance(path, str) or not path:
            raise _BadRequest("lora_path must be a non-empty string", param="lora_path")
        try:
            self.server.llm.swap(path, version=name)
        except SwapError as e:
            raise _BadRequest(f"could not load LoRA adapter {name!r} from {path}: {e}", param="lora_path") from e
        except Exception as e:
            log.exception("swapping in %s from %s failed", name, path)
            raise _BadRequest(f"loading {name!r} failed: {e}", status=500, kind="server_error") from e
        self._send(200, f"Success: LoRA adapter '{name}' added successfully.".encode(), "text/plain; charset=utf-8")

    def _chat(self, body: dict[str, Any]) -> None:
        request = self._parse_chat(body)
        llm = self.server.llm
        model = body.get("model")
        version = llm.version
        if model is not None and model != version:
            raise _BadRequest(f"The model `{model}` does not exist.", status=404, kind="not_found_error", param="model")
        # Only a request with tools passes them, so an LLM without the keyword still serves the rest.
        extra: dict[str, Any] = {"tools": request.tools} if request.tools else {}
        try:
            stream = llm.stream(request.messages, max_new_tokens=request.max_tokens, stop=request.stop, **extra)
        except (PromptTooLong, ValueError) as e:
            raise _BadRequest(str(e), param="messages") from e
        except Exception as e:
            log.exception("the model failed to start an answer")
            raise _BadRequest(f"the model failed: {e}", status=500, kind="server_error") from e
        with self.server.lock:
            self.server.streams.add(stream)
        done = threading.Event()
        watcher = threading.Thread(target=_watch_for_hangup, args=(self.connection, done, stream.cancel), daemon=True)
        watcher.start()
        try:
            if request.stream:
                self._stream_chat(stream, request, version)
            else:
                self._complete_chat(stream, version)
        finally:
            done.set()
            with self.server.lock:
                self.server.streams.discard(stream)

    def _complete_chat(self, stream: TokenStream, version: str) -> None:
        try:
            for _ in stream:
                pass
            completion = stream.completion
        except Exception as e:
            log.exception("the model failed mid-answer")
            raise _BadRequest(f"the model failed: {e}", status=500, kind="server_error") from e
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": version,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": completion.text, **_message_calls(completion)},
                        "logprobs": None,
                        "finish_reason": _finish_reason(completion),
                    }
                ],
                "usage": _usage(completion),
            },
        )

    def _stream_chat(self, stream: TokenStream, request: _ChatRequest, version: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = version

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            event: dict[str, Any] = {**base, "choices": [choice]}
            if request.include_usage:
                event["usage"] = None
            return event

        deltas = iter(stream)
        try:
            self._send_event(chunk({"role": "assistant", "content": ""}))
            try:
                for delta in deltas:
                    if delta:
                        self._send_event(chunk({"content": delta}))
                completion = stream.completion
                for call in _streamed_calls(completion):
                    self._send_event(chunk({"tool_calls": [call]}))
            except _ClientGone:
                raise
            except Exception as e:
                log.exception("the model failed mid-answer")
                self._send_event({"error": {"message": f"the model failed: {e}", "type": "server_error", "code": 500}})
            else:
                self._send_event(chunk({}, _finish_reason(completion)))
                if request.include_usage:
                    self._send_event({**base, "choices": [], "usage": _usage(completion)})
            self._send_chunk(b"data: [DONE]\n\n")
            self._send_chunk(b"")
        except _ClientGone:
            stream.cancel()
            with contextlib.suppress(Exception):
                for _ in deltas:  # let the model wind down; it stops at the next token
                    pass
            raise

    # --- request parsing ----------------------------------------------------------------------

    def _read_json(self) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _BadRequest("chunked request bodies are not supported; send Content-Length", status=411)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise _BadRequest("Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _BadRequest(f"the body must be at most {MAX_BODY_BYTES} bytes", status=413)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise _BadRequest(f"the body is not valid JSON: {e}") from e
        if not isinstance(body, dict):
            raise _BadRequest("the body must be a JSON object")
        return body

    def _parse_chat(self, body: dict[str, Any]) -> _ChatRequest:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("messages must be a non-empty list", param="messages")
        parsed = [_parse_message(m, i) for i, m in enumerate(messages)]
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = self.server.default_max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
            raise _BadRequest("max_tokens must be a positive integer", param="max_tokens")
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise _BadRequest("stop must be a string or a list of non-empty strings", param="stop")
        if body.get("n", 1) != 1:
            raise _BadRequest("only n=1 is supported", param="n")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _BadRequest("stream must be true or false", param="stream")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise _BadRequest("stream_options must be an object", param="stream_options")
        tools = body.get("tools")
        if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
            raise _BadRequest("tools must be a list of objects", param="tools")
        return _ChatRequest(parsed, max_tokens, stop, stream, bool(options.get("include_usage")), tools or None)

    def _authorize(self) -> None:
        key = self.server.api_key
        if key is None:
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise _BadRequest("Incorrect API key provided.", status=401)

    # --- writing ------------------------------------------------------------------------------

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError as e:
            raise _ClientGone from e

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send_error(self, error: _BadRequest) -> None:
        body = {"error": {"message": str(error), "type": error.kind, "param": error.param, "code": error.status}}
        with contextlib.suppress(_ClientGone):
            self._send_json(error.status, body)

    def _send_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as e:
            raise _ClientGone from e

    def _send_event(self, event: dict[str, Any]) -> None:
        self._send_chunk(b"data: " + json.dumps(event).encode() + b"\n\n")


def _parse_message(message: object, index: int) -> Message:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _BadRequest(f"{param} must be an object", param=param)
    role = _ROLES.get(str(message.get("role")))
    if role is None:
        raise _BadRequest(f"{param}.role must be one of {sorted(_ROLES)}", param=f"{param}.role")
    content = message.get("content")
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if len(texts) != len(content) or any(p.get("type") != "text" for p in content):
            raise _BadRequest(f"{param}.content: only text parts are supported", param=f"{param}.content")
        content = "".join(texts)
    if not isinstance(content, str):
        raise _BadRequest(f"{param}.content must be a string", param=f"{param}.content")
    return {"role": role, "content": content}


def _wire_calls(completion: Completion) -> list[dict[str, Any]]:
    """The answer's tool calls in OpenAI's message shape: an id, and the arguments as a JSON string."""
    wired = []
    for call in completion.tool_calls:
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        function = {"name": str(call["name"]), "arguments": text}
        wired.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function})
    return wired


def _message_calls(completion: Completion) -> dict[str, Any]:
    return {"tool_calls": _wire_calls(completion)} if completion.tool_calls else {}


def _streamed_calls(completion: Completion, piece: int = 8) -> list[dict[str, Any]]:
    """`delta.tool_calls` fragments: id, type and name first, then the arguments a few characters at a time."""
    fragments: list[dict[str, Any]] = []
    for index, call in enumerate(_wire_calls(completion)):
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        head = {"index": index, "id": call["id"], "type": "function", "function": {"name": name, "arguments": ""}}
        fragments.append(head)
        for start in range(0, len(arguments), piece):
            fragments.append({"index": index, "function": {"arguments": arguments[start : start + piece]}})
    return fragments


def _finish_reason(completion: Completion) -> str:
    return "tool_calls" if completion.tool_calls and completion.finish_reason == "stop" else completion.finish_reason


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def _watch_for_hangup(connection: socket.socket, done: threading.Event, on_hangup: Callable[[], None]) -> None:
    """Cancel the answer when the client closes its connection before the answer is done."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows: no early cancel
        return
    poller = select.poll()
    poller.register(connection, select.POLLIN | select.POLLHUP | select.POLLERR)
    while not done.is_set():
        try:
            if not poller.poll(100):
                continue
            peeked = connection.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            peeked = b""
        if not peeked and not done.is_set():
            log.debug("client hung up; cancelling its answer")
            on_hangup()
        return  # a hang-up, or the client's next request arriving early: nothing more to watch


__all__ = ["OpenAIServer", "serve_openai"]
