"""The second engine backend: an OpenAI-compatible `/v1/chat/completions` server (vLLM, SGLang, ...).

A team that outgrows one GPU runs vLLM or SGLang (tensor parallel, replicas behind a balancer) and
points Ember at it; everything above the `LLM` protocol stays the same.

    engine = OpenAIEngine("http://gpu-box:8000", model="Qwen/Qwen2.5-7B-Instruct", tokenizer=tok)
    for delta in (stream := engine.stream(messages, max_new_tokens=256, timeout=60)):
        ...
    stream.completion.finish_reason      # "stop", "length", "cancelled" or "deadline"

- Every request streams (SSE) and asks for `stream_options.include_usage`; token counts come from
  the server's `usage`, else from the tokenizer if one was given, else they are 0.
- Answers are greedy (`temperature: 0`), like the local engine.
- The prompt is fitted to `context_window - max_new_tokens` before it is sent: exactly with the
  model's tokenizer when one is given (`models.prompt.fit`), else with a rough 4-characters-per-token
  estimate. Without `context_window` the server's `/v1/models` is asked once (vLLM reports
  `max_model_len`); a server that does not say gets the conversation as it is.
- `cancel()` and the per-request `timeout` (a deadline from submission) close the connection, which
  makes vLLM abort the request; the text so far is kept.
- `swap(location, version=...)` loads a LoRA adapter at runtime through vLLM's
  `POST /v1/load_lora_adapter` (the server needs `--enable-lora` and
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`); later requests ask for `model: version`.
- Errors talking to the server (refused connection, HTTP 4xx/5xx, a stream cut short, silence for
  longer than `timeout`) raise `OpenAIBackendError`.

Thread-safe: any number of threads may stream at once. No torch here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import requests

from models.base import Completion, FinishReason, Message, PromptInfo, SwapError, Tools, drain
from models.prompt import PromptTooLong, fit

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# The estimate used when no tokenizer is given: generous for English, short for code or CJK text.
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators around each message
PROMPT_OVERHEAD_TOKENS = 3  # the assistant turn's opening

_READ_SIZE = 65536
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "length": "length",
    "cancelled": "cancelled",
    "abort": "cancelled",
    "deadline": "deadline",
    "error": "error",
}


class OpenAIBackendError(RuntimeError):
    """The OpenAI-compatible server could not be reached, refused the request or broke the stream."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenAIEngine:
    """An `LLM` served by an OpenAI-compatible server; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        version: str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        context_window: int | None = None,
        timeout: float = 120.0,
    ) -> None:
        if context_window is not None and context_window <= 0:
            raise ValueError(f"context_window must be positive, not {context_window}")
        self.base_url = _normalize_base_url(base_url)
        self.version = version or model
        self.tokenizer = tokenizer
        self.timeout = timeout
        self._model = model
        self._api_key = api_key
        self._context_window = context_window
        self._window_known = context_window is not None
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to share between threads
        self._in_flight: set[OpenAIStream] = set()
        self._closed = False

    # --- the LLM protocol ---------------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model name sent with each request: the base model, or the LoRA adapter last swapped in."""
        with self._lock:
            return self._model

    @property
    def queue_depth(self) -> int:
        """Requests this client has in flight (the server may be busy with other clients too)."""
        with self._lock:
            return len(self._in_flight)

    @property
    def context_window(self) -> int | None:
        """Prompt plus answer tokens the server accepts; None when neither given nor reported."""
        with self._lock:
            if self._window_known:
                return self._context_window
        window, known = self._discover_context_window()
        with self._lock:
            if known and not self._window_known:
                self._context_window, self._window_known = window, True
            return self._context_window

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> OpenAIStream:
        """Send the request and wait for the server to accept it; iterate the result for text deltas."""
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, not {max_new_tokens}")
        if not messages:
            raise ValueError("no messages to answer")
        started = time.perf_counter()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise OpenAIBackendError("the engine is closed")
            model, version = self._model, self.version
        sent, shape = self._fit(messages, max_new_tokens)
        body: dict[str, Any] = {
            "model": model,
            "messages": [_on_the_wire(message) for message in sent],
            "max_tokens": max_new_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            body["stop"] = list(stop)
        if tools:
            body["tools"] = list(tools)
        request = OpenAIStream(self, version=version, shape=shape, started=started, deadline=deadline)
        with self._lock:
            self._in_flight.add(request)
        try:
            request._open(body)
        except BaseException:
            request._discard()
            raise
        return request

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> Completion:
        return drain(self.stream(messages, max_new_tokens=max_new_tokens, stop=stop, timeout=timeout, tools=tools))

    def swap(self, location: str, *, version: str) -> None:
        """Load the LoRA adapter at `location` (a path on the server) as `version` and answer with it."""
        url = f"{self.base_url}/v1/load_lora_adapter"
        try:
            response = requests.post(
                url,
                json={"lora_name": version, "lora_path": location},
                headers=self._headers(),
                timeout=self.timeout,
            )
        except requests.RequestException as e:
            raise SwapError(f"could not reach {url} to load LoRA adapter {version!r}: {e}") from e
        if response.status_code != 200:
            message = _error_message(response)
            lowered = message.lower()
            if response.status_code == 400 and "already" in lowered and "loaded" in lowered:
                # vLLM keeps adapters by name; Ember's versions are unique, so this is the same one.
                log.info("LoRA adapter %s is already loaded on the server; answering with it", version)
            else:
                hint = ""
                if response.status_code in (404, 405):
                    hint = " (vLLM needs --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True for this)"
                raise SwapError(
                    f"the server refused LoRA adapter {version!r} from {location}: "
                    f"HTTP {response.status_code}: {message}{hint}"
                )
        with self._lock:
            previous = self._model
            self._model = version
            self.version = version
        log.info("answering with LoRA adapter %s (was %s)", version, previous)

    def close(self) -> None:
        """Cancel the requests in flight and drop the connections; later requests raise."""
        with self._lock:
            self._closed = True
            running = list(self._in_flight)
        for request in running:
            request.cancel()

    # --- internals ----------------------------------------------------------------------------

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _release(self, request: OpenAIStream) -> None:
        with self._lock:
            self._in_flight.discard(request)

    def _discover_context_window(self) -> tuple[int | None, bool]:
        """Ask `/v1/models` for `max_model_len`: (window, whether the server answered)."""
        url = f"{self.base_url}/v1/models"
        try:
            response = requests.get(url, headers=self._headers(), timeout=min(self.timeout, 10.0))
            response.raise_for_status()
            cards = response.json().get("data") or []
        except (requests.RequestException, ValueError, AttributeError) as e:
            log.debug("could not read the context window from %s: %s", url, e)
            return None, False
        model = self.model
        ours = [c for c in cards if isinstance(c, dict) and model in (c.get("id"), c.get("root"))]
        for card in [*ours, *cards]:
            length = card.get("max_model_len") if isinstance(card, dict) else None
            if isinstance(length, int) and length > 0:
                log.info("context window of %s: %d tokens (from %s)", model, length, url)
                return length, True
        return None, True

    def _fit(self, messages: Sequence[Message], max_new_tokens: int) -> tuple[list[Message], PromptInfo]:
        """The messages to send, and how they were fitted (prompt_tokens: tokenizer count, else 0)."""
        messages = [dict(m) for m in messages]
        question = messages[-1]
        length = len(question["content"])
        window = self.context_window
        if window is None:
            return messages, PromptInfo(self._count_prompt(messages), 0, length, length)
        budget = window - max_new_tokens
        if budget <= 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room in a {window}-token window")
        system = [m for m in messages[:1] if m["role"] == "system"]
        history = messages[len(system) : -1]
        if self.tokenizer is not None:
            with self._tokenizer_lock:
                fitted = fit(self.tokenizer, messages, budget)
            kept = {**question, "content": question["content"][: fitted.question_chars_kept]}
            sent = [*system, *history[fitted.dropped_messages :], kept]
            return sent, PromptInfo(len(fitted.input_ids), fitted.dropped_messages, length, len(kept["content"]))
        return _fit_by_estimate(system, history, question, budget)

    def _count_prompt(self, messages: Sequence[Message]) -> int:
        if self.tokenizer is None:
            return 0
        from models.prompt import render

        with self._tokenizer_lock:
            return len(render(self.tokenizer, messages))

    def _count_text(self, text: str) -> int:
        if self.tokenizer is None or not text:
            return 0
        with self._tokenizer_lock:
            return len(self.tokenizer.encode(text, add_special_tokens=False))


class OpenAIStream:
    """One streaming request: iterate for text deltas (iterating again continues the same stream), then read
    `completion`."""

    def __init__(
        self, engine: OpenAIEngine, *, version: str, shape: PromptInfo, started: float, deadline: float | None
    ) -> None:
        self._engine = engine
        self._version = version
        self._shape = shape
        self._started = started
        self._deadline = deadline
        self._state = threading.Lock()
        self._session: requests.Session | None = None
        self._response: requests.Response | None = None
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._iterator: Iterator[str] | None = None
        self._finished = False
        self._abort_reason: FinishReason | None = None
        self._finish_reason: FinishReason | None = None
        self._done = False
        self._usage: dict[str, Any] | None = None
        self._parts: list[str] = []
        self._first_token: float | None = None
        self._completion: Completion | None = None

    # --- TokenStream --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        # One generator per request: iterating again continues (or finds finished) the same stream.
        with self._state:
            if self._iterator is None:
                self._iterator = self._run()
            return self._iterator

    def cancel(self) -> None:
        """Stop generating: close the connection (the server aborts the request); the text so far stays."""
        self._abort("cancelled")

    @property
    def completion(self) -> Completion:
        if self._completion is None:
            raise RuntimeError("the completion is available once the stream has been iterated to its end")
        return self._completion

    # --- internals ----------------------------------------------------------------------------

    def _open(self, body: dict[str, Any]) -> None:
        engine = self._engine
        url = f"{engine.base_url}/v1/chat/completions"
        read_timeout = engine.timeout
        if self._deadline is not None:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._abort("deadline")
                return
            read_timeout = min(read_timeout, remaining)
        headers = engine._headers(Accept="text/event-stream", **{"Accept-Encoding": "identity"})
        # A session per request: nothing shared between threads, and the connection is closed at the
        # end anyway (a stream is not read past [DONE], so it cannot go back to a pool).
        session = self._session = requests.Session()
        try:
            response = session.post(
                url, json=body, headers=headers, stream=True, timeout=(engine.timeout, read_timeout)
            )
        except requests.ReadTimeout as e:
            if self._past_deadline():
                self._abort("deadline")
                return
            raise OpenAIBackendError(f"{url} did not answer within {engine.timeout:g} s") from e
        except requests.ConnectionError as e:
            raise OpenAIBackendError(f"cannot reach the OpenAI-compatible server at {engine.base_url}: {e}") from e
        except requests.RequestException as e:
            raise OpenAIBackendError(f"request to {url} failed: {e}") from e
        if response.status_code != 200:
            message = _error_message(response)
            response.close()
            raise OpenAIBackendError(
                f"{url} answered HTTP {response.status_code}: {message}", status=response.status_code
            )
        self._response = response
        self._socket = _socket_of(response)
        if self._deadline is not None:
            self._timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._abort, ("deadline",))
            self._timer.daemon = True
            self._timer.start()

    def _discard(self) -> None:
        """The request never got going: forget it."""
        if self._session is not None:
            self._session.close()
        self._engine._release(self)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _abort(self, reason: FinishReason) -> None:
        with self._state:
            if self._finished or self._abort_reason is not None:
                return
            self._abort_reason = reason
            response, iterating = self._response, self._iterator is not None
        # Shutting the socket down wakes a reader blocked in recv() at once; close() alone may not.
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        if response is not None and (self._socket is None or not iterating):
            response.close()
        if self._timer is not None:
            self._timer.cancel()
        self._engine._release(self)

    def _run(self) -> Iterator[str]:
        failed = False
        try:
            for delta in self._deltas():
                if not delta:
                    continue
                if self._first_token is None:
                    self._first_token = time.perf_counter()
                self._parts.append(delta)
                yield delta
        except GeneratorExit:
            self._abort("cancelled")  # the consumer stopped reading
            raise
        except BaseException:
            failed = True
            raise
        finally:
            self._finish(failed)

    def _deltas(self) -> Iterator[str]:
        response = self._response
        if response is None or self._abort_reason is not None:
            return
        content_type = response.headers.get("Content-Type", "")
        if "text/event-stream" not in content_type:
            yield from self._whole_answer(response)
            return
        raw: Any = response.raw
        read1 = raw.read1 if hasattr(raw, "read1") else raw._fp.read1
        buffer = b""
        data: list[str] = []
        while True:
            try:
                chunk = read1(_READ_SIZE)
            except Exception as e:  # urllib3 and socket errors alike, once the connection is gone
                if self._abort_reason is not None:
                    return
                if self._past_deadline():
                    self._abort("deadline")
                    return
                raise OpenAIBackendError(f"the stream from {self._engine.base_url} broke: {e}") from e
            if self._abort_reason is not None:
                return
            if not chunk:
                lines = [buffer, b""] if buffer else [b""]
            else:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.rstrip(b"\r").decode("utf-8", errors="replace")
                if text:
                    field, _, value = text.partition(":")
                    if field == "data":
                        data.append(value[1:] if value.startswith(" ") else value)
                    continue  # comments (": ping"), event:, id: and retry: lines carry nothing for us
                if not data:
                    continue
                event, data = "\n".join(data), []
                if event.strip() == "[DONE]":
                    self._done = True
                    return
                yield from self._event(event)
            if not chunk:
                if self._finish_reason is not None:
                    return  # a server that ends the stream without [DONE]
                raise OpenAIBackendError(f"{self._engine.base_url} closed the stream before the answer finished")
            if self._past_deadline():
                self._abort("deadline")
                return

    def _event(self, event: str) -> Iterator[str]:
        try:
            payload = json.loads(event)
        except ValueError as e:
            raise OpenAIBackendError(f"{self._engine.base_url} sent an event that is not JSON: {event[:200]!r}") from e
        if not isinstance(payload, dict):
            raise OpenAIBackendError(f"{self._engine.base_url} sent an unexpected event: {event[:200]!r}")
        if payload.get("error"):
            raise OpenAIBackendError(f"{self._engine.base_url} failed mid-answer: {_describe_error(payload)}")
        if isinstance(payload.get("usage"), dict):
            self._usage = payload["usage"]
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                yield content
            reason = choice.get("finish_reason")
            if reason:
                self._finish_reason = _FINISH_REASONS.get(str(reason), "stop")

    def _whole_answer(self, response: requests.Response) -> Iterator[str]:
        """A server that ignored `stream: true` and sent one JSON completion."""
        try:
            payload = response.json()
            choice = payload["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise OpenAIBackendError(f"{self._engine.base_url} sent an answer that is not a chat completion") from e
        if isinstance(payload.get("usage"), dict):
            self._usage = payload["usage"]
        self._finish_reason = _FINISH_REASONS.get(str(choice.get("finish_reason") or "stop"), "stop")
        self._done = True
        if content:
            yield str(content)

    def _finish(self, failed: bool) -> None:
        with self._state:
            if self._completion is not None:
                return
            self._finished = True
        if self._timer is not None:
            self._timer.cancel()
        if self._response is not None:
            self._response.close()
        if self._session is not None:
            self._session.close()
        self._engine._release(self)
        engine, text = self._engine, "".join(self._parts)
        reason: FinishReason = self._abort_reason or ("error" if failed else self._finish_reason or "stop")
        usage = self._usage or {}
        prompt_tokens = _int(usage.get("prompt_tokens"), None)
        if prompt_tokens is None:
            prompt_tokens = self._shape.prompt_tokens
        completion_tokens = _int(usage.get("completion_tokens"), None)
        if completion_tokens is None:
            completion_tokens = engine._count_text(text)
        shape = self._shape
        self._completion = Completion(
            text=text,
            model_version=self._version,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=time.perf_counter() - self._started,
            prompt=PromptInfo(prompt_tokens, shape.dropped_messages, shape.question_chars, shape.question_chars_kept),
            finish_reason=reason,
            time_to_first_token=None if self._first_token is None else self._first_token - self._started,
        )


def _fit_by_estimate(
    system: list[Message], history: list[Message], question: Message, budget: int
) -> tuple[list[Message], PromptInfo]:
    """Drop the oldest turns, then cut the question, by a characters-per-token estimate."""

    def cost(message: Message) -> int:
        return MESSAGE_OVERHEAD_TOKENS + math.ceil(len(message["content"]) / CHARS_PER_TOKEN)

    fixed = PROMPT_OVERHEAD_TOKENS + sum(cost(m) for m in system)
    history = list(history)
    dropped = 0
    total = fixed + sum(cost(m) for m in history) + cost(question)
    while total > budget and history:
        total -= cost(history.pop(0))
        dropped += 1
    content = question["content"]
    if total > budget:
        room = budget - fixed - MESSAGE_OVERHEAD_TOKENS
        if room <= 0:
            raise PromptTooLong(f"the system prompt alone takes about {fixed} of {budget} tokens")
        content = content[: room * CHARS_PER_TOKEN]
    sent = [*system, *history, {**question, "content": content}]
    return sent, PromptInfo(0, dropped, len(question["content"]), len(content))


def _normalize_base_url(url: str) -> str:
    """`http://host:8000`, `http://host:8000/` and `http://host:8000/v1` all name the same server."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the OpenAI-compatible server's URL must start with http:// or https://, not {url!r}")
    return url


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The response's socket, so another thread can shut it down under a blocked read."""
    raw: Any = response.raw
    for path in (("_connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        node = raw
        for name in path:
            node = getattr(node, name, None)
            if node is None:
                break
        if isinstance(node, socket.socket):
            return node
    return None


def _describe_error(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            if payload.get(key):
                return str(payload[key])
    return json.dumps(payload)[:500]


def _error_message(response: requests.Response) -> str:
    try:
        return _describe_error(response.json())
    except ValueError:
        return response.text.strip()[:500] or response.reason or "no details"


def _int(value: object, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


__all__ = ["OpenAIBackendError", "OpenAIEngine", "OpenAIStream"]

if TYPE_CHECKING:  # mypy checks that OpenAIEngine is an LLM and OpenAIStream a TokenStream
    from models.base import LLM, TokenStream

    def _is_llm(engine: OpenAIEngine) -> LLM:
        return engine

    def _is_token_stream(stream: OpenAIStream) -> TokenStream:
        return stream


def _on_the_wire(message: Message) -> Message:
    """The OpenAI API wants tool-call arguments as a JSON string; chat templates (and the agent) use a dict."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    wired = []
    for call in calls:
        function = dict(call.get("function", {}))
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {})
        wired.append({"type": "function", **call, "function": function})
    return {**message, "tool_calls": wired}
