"""The second engine backend, for a team past one GPU: an OpenAI-compatible server (vLLM, SGLang) through
the official `openai` client. Everything above the `LLM` protocol stays the same. Thread-safe: any number
of threads may stream at once. No torch here.

    engine = OpenAIEngine("http://gpu-box:8000", model="Qwen/Qwen2.5-7B-Instruct", tokenizer=tok)
    for delta in (stream := engine.stream(messages, max_new_tokens=256, timeout=60)): ...
    stream.completion.finish_reason      # "stop", "length", "cancelled" or "deadline"
- Every request streams with `stream_options.include_usage` and `temperature: 0` (greedy, like the
  local engine); token counts come from the server's `usage`, else the tokenizer, else are 0.
- The prompt is fitted to `context_window - max_new_tokens` (`models.prompt.fit`): with the model's
  tokenizer when one is given, else by a 4-characters-per-token estimate, which `count_tokens` then
  uses too. Without `context_window`, `/v1/models` is asked once (vLLM reports `max_model_len`).
- `supports_tools`: as given, else whether the tokenizer's chat template shows tools (vLLM takes them
  only with `--enable-auto-tool-choice --tool-call-parser ...`, which a client cannot see). Streamed
  `delta.tool_calls` land on `Completion.tool_calls` as `{"name", "arguments"}`, the arguments parsed
  from JSON, or the raw string when they are not a JSON object, so the model can be told.
- `cancel()` and the per-request `timeout` (a deadline from submission) shut the connection's socket
  down, which wakes a blocked reader and makes vLLM abort the request; the text so far is kept.
- Only opening a request is retried (`max_retries`, exponential backoff, `Retry-After` honoured):
  connection errors, timeouts, HTTP 408, 409, 429 and 5xx; never past the request's deadline.
- `swap(location, version=...)` loads a LoRA adapter through vLLM's `POST /v1/load_lora_adapter` (needs
  `--enable-lora`, `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`); later requests ask for `model: version`.
- Errors talking to the server (refused connection, HTTP 4xx/5xx, a stream cut short, silence for
  longer than `timeout`) raise `OpenAIBackendError`. `OPENAI_API_KEY` is never read; `api_key` is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast, get_args

import openai
from openai.types.chat import ChatCompletionChunk

from models.base import Completion, FinishReason, Message, PromptInfo, SwapError, Tools, drain
from models.prompt import EstimatingTokenizer, fit, render, template_supports_tools

if TYPE_CHECKING:
    import httpx2
    from transformers import PreTrainedTokenizerBase

    from models.base import LLM

log = logging.getLogger(__name__)

# vLLM's "abort" is a cancel; reasons Ember has no name for ("eos", "tool_calls") are a stop.
_FINISH_REASONS: dict[str, FinishReason] = {**{r: r for r in get_args(FinishReason)}, "abort": "cancelled"}


class OpenAIBackendError(RuntimeError):
    """The OpenAI-compatible server could not be reached, refused the request or broke the stream."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _DeadlinePassed(Exception):
    """Raised before an attempt (a retry, say) that would start after its request's deadline."""


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
        supports_tools: bool | None = None,
        max_retries: int = 2,
    ) -> None:
        if context_window is not None and context_window <= 0:
            raise ValueError(f"context_window must be positive, not {context_window}")
        self.base_url, self.timeout = _base_url(base_url), timeout
        self.model, self.version, self.tokenizer = model, version or model, tokenizer  # model: what requests ask for
        self._context_window, self._window_known = context_window, context_window is not None
        self.supports_tools = template_supports_tools(tokenizer) if supports_tools is None else supports_tools
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to share between threads
        self._counter = cast("PreTrainedTokenizerBase", tokenizer or EstimatingTokenizer())
        self._in_flight: set[OpenAIStream] = set()
        self._closed = False
        self._opening = threading.local()  # the deadline of the request this thread is opening
        # A placeholder key keeps the client from reading OPENAI_API_KEY; without a key no header goes out.
        self._headers: dict[str, str | openai.Omit] = {} if api_key else {"Authorization": openai.omit}
        hooks = {"request": [self._before_send]}
        http, url = openai.DefaultHttpxClient(event_hooks=hooks), f"{self.base_url}/v1"
        self._client = openai.OpenAI(
            base_url=url, api_key=api_key or "none", timeout=timeout, max_retries=max_retries, http_client=http
        )

    @property
    def queue_depth(self) -> int:
        """Requests this client has in flight (the server may be busy with other clients too)."""
        with self._lock:
            return len(self._in_flight)

    @property
    def context_window(self) -> int | None:
        """Prompt plus answer tokens the server accepts; None when neither given nor reported."""
        if not self._window_known:  # asked until the server answers, then never again
            self._context_window, self._window_known = self._discover_context_window()
        return self._context_window

    def count_tokens(self, messages: Sequence[Message], *, tools: Tools = None) -> int:
        """Exact with the tokenizer; else the characters-per-token estimate the prompt is fitted by."""
        with self._tokenizer_lock:
            return len(render(self._counter, messages, tools=tools))

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
        started, deadline = time.perf_counter(), None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise OpenAIBackendError("the engine is closed")
            model, version = self.model, self.version
        sent, shape = self._fit(messages, max_new_tokens, tools)
        request = OpenAIStream(self, version=version, shape=shape, started=started, deadline=deadline)
        with self._lock:
            self._in_flight.add(request)
        request._open(
            model=model,
            messages=[_on_the_wire(message) for message in sent],
            max_tokens=max_new_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            stop=list(stop) if stop else openai.omit,
            tools=[dict(tool) for tool in tools] if tools else openai.omit,
        )
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
        body = {"lora_name": version, "lora_path": location}
        try:
            self._client.post("/load_lora_adapter", cast_to=str, body=body, options={"headers": self._headers})
        except openai.APIStatusError as e:
            message, status = _describe_error(e.body, e.message), e.status_code
            # vLLM keeps adapters by name; Ember's versions are unique, so one already loaded is this one.
            if not (status == 400 and "already" in message.lower() and "loaded" in message.lower()):
                hint = " (vLLM needs --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True for this)"
                raise SwapError(
                    f"the server refused LoRA adapter {version!r} from {location}: HTTP {status}: {message}"
                    + (hint if status in (404, 405) else "")
                ) from e
        except openai.OpenAIError as e:
            url, cause = f"{self.base_url}/v1/load_lora_adapter", e.__cause__ or e
            raise SwapError(f"could not reach {url} to load LoRA adapter {version!r}: {cause}") from e
        with self._lock:
            previous, self.model, self.version = self.model, version, version
        log.info("answering with LoRA adapter %s (was %s)", version, previous)

    def close(self) -> None:
        """Cancel the requests in flight and drop the connections; later requests raise."""
        with self._lock:
            self._closed, running = True, list(self._in_flight)
        for request in running:
            request.cancel()  # their sockets are shut down now, so closing the pool under them is safe
        self._client.close()

    def _before_send(self, request: httpx2.Request) -> None:
        """httpx's request hook, run before every attempt: give it only the time left to its deadline."""
        if (deadline := getattr(self._opening, "deadline", None)) is None:
            return
        if (left := deadline - time.monotonic()) <= 0:
            raise _DeadlinePassed
        timeouts = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: left if v is None else min(v, left) for k, v in timeouts.items()}

    def _release(self, request: OpenAIStream) -> None:
        with self._lock:
            self._in_flight.discard(request)

    def _discover_context_window(self) -> tuple[int | None, bool]:
        """Ask `/v1/models` for `max_model_len`: (window, whether the server answered)."""
        try:
            client = self._client.with_options(max_retries=0, timeout=min(self.timeout, 10.0))
            cards = [card.to_dict() for card in client.models.list(extra_headers=self._headers).data]
        except (openai.OpenAIError, ValueError, AttributeError, TypeError) as e:
            log.debug("could not read the context window from %s/v1/models: %s", self.base_url, e)
            return None, False
        model = self.model
        cards.sort(key=lambda card: model not in (card.get("id"), card.get("root")))  # this model's card first
        window = next((n for c in cards if isinstance(n := c.get("max_model_len"), int) and n > 0), None)
        log.info("context window of %s from %s/v1/models: %s tokens", model, self.base_url, window)
        return window, True

    def _fit(self, messages: Sequence[Message], max_new_tokens: int, tools: Tools) -> tuple[list[Message], PromptInfo]:
        """The messages to send, and how they were fitted (prompt_tokens: tokenizer count, else 0)."""
        messages, window = [dict(m) for m in messages], self.context_window
        if window is not None and window <= max_new_tokens:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room in a {window}-token window")
        with self._tokenizer_lock:  # without a window, nothing is cut: fitting only counts
            fitted = fit(
                self._counter, messages, sys.maxsize if window is None else window - max_new_tokens, tools=tools
            )
        system, question = [m for m in messages[:1] if m["role"] == "system"], messages[-1]
        kept = {**question, "content": question["content"][: fitted.question_chars_kept]}
        sent = [*system, *messages[len(system) + fitted.dropped_messages : -1], kept]
        counted = 0 if self.tokenizer is None else len(fitted.input_ids)
        return sent, PromptInfo(counted, fitted.dropped_messages, fitted.question_chars, fitted.question_chars_kept)

    def _count_text(self, text: str) -> int:
        with self._tokenizer_lock:
            return len(self.tokenizer.encode(text, add_special_tokens=False)) if self.tokenizer and text else 0


class OpenAIStream:
    """One streaming request: iterate for text deltas (iterating again continues the same stream), then read
    `completion`."""

    def __init__(
        self, engine: OpenAIEngine, *, version: str, shape: PromptInfo, started: float, deadline: float | None
    ) -> None:
        self._engine, self._version, self._shape = engine, version, shape
        self._started, self._deadline = started, deadline
        self._state = threading.Lock()
        self._stream: openai.Stream[ChatCompletionChunk] | None = None
        self._timer: threading.Timer | None = None
        self._iterator: Iterator[str] | None = None
        self._reading = self._finished = False
        self._abort_reason: FinishReason | None = None
        self._finish_reason: FinishReason | None = None
        self._usage: Any = None
        self._parts: list[str] = []
        self._calls: dict[int, tuple[list[str], list[str]]] = {}  # index: (name pieces, argument pieces)
        self._first_token: float | None = None
        self._completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        with self._state:  # one generator per request: iterating again continues the same stream
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

    def _open(self, **request: Any) -> None:
        engine = self._engine
        engine._opening.deadline = self._deadline
        try:
            stream = engine._client.chat.completions.create(**request, extra_headers=engine._headers)
        except BaseException as e:
            engine._release(self)
            if not isinstance(e, (openai.OpenAIError, _DeadlinePassed)):
                raise
            self._fail(e, opening=True)
            return
        finally:
            engine._opening.deadline = None
        with self._state:
            self._stream, aborted = stream, self._abort_reason is not None
        if aborted:  # cancelled (engine.close()) while the request was being opened
            stream.close()
        elif self._deadline is not None:
            self._timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._abort, ("deadline",))
            self._timer.daemon = True
            self._timer.start()

    def _fail(self, e: Exception, *, opening: bool) -> None:
        """Raise what an error means, unless a cancel or the deadline ended the request (then it ends there)."""
        base = self._engine.base_url
        past_deadline = self._deadline is not None and time.monotonic() >= self._deadline
        if self._abort_reason is not None or isinstance(e, _DeadlinePassed) or past_deadline:
            self._abort("deadline")  # nothing more to do if it was cancelled
            return
        if isinstance(e, openai.APIStatusError):
            message = f"{base}/v1/chat/completions answered HTTP {e.status_code}: {_describe_error(e.body, e.message)}"
            raise OpenAIBackendError(message, status=e.status_code) from e
        if isinstance(e, openai.APITimeoutError):
            raise OpenAIBackendError(f"{base} sent nothing for {self._engine.timeout:g} s") from e
        if isinstance(e, openai.APIConnectionError):
            what = "cannot reach the OpenAI-compatible server at" if opening else "lost the stream from"
            raise OpenAIBackendError(f"{what} {base}: {e.__cause__ or e}") from e  # the transport's own words
        if isinstance(e, openai.APIError):  # an error event in the stream
            raise OpenAIBackendError(f"{base} failed mid-answer: {e.message}") from e
        raise OpenAIBackendError(f"{base} sent something that is not a chat completion: {e}") from e

    def _abort(self, reason: FinishReason) -> None:
        with self._state:
            if self._finished or self._abort_reason is not None:
                return
            self._abort_reason = reason
            stream, reading = self._stream, self._reading
        if self._timer is not None:
            self._timer.cancel()
        self._engine._release(self)
        if stream is None:
            return
        # close() does not wake a thread blocked in recv(); a shutdown does, and sends the FIN vLLM aborts on.
        network = stream.response.extensions.get("network_stream")  # httpx's documented extension (HTTP/1.1)
        sock = network.get_extra_info("socket") if network is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's method, also under TLS
        if not reading or not isinstance(sock, socket.socket):  # else the reader closes it, woken
            with contextlib.suppress(Exception):
                stream.close()

    def _run(self) -> Iterator[str]:
        failed = False
        try:
            for delta in self._deltas():
                self._first_token = self._first_token or time.perf_counter()
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
        with self._state:
            stream = None if self._abort_reason else self._stream
            self._reading = stream is not None
        if stream is None:
            return
        try:
            if "text/event-stream" not in stream.response.headers.get("content-type", ""):
                yield from self._whole_answer(stream)
                return
            for chunk in stream:
                if self._abort_reason is not None:
                    return
                yield from self._chunk(chunk)
        except Exception as e:  # the client's errors, odd events, and whatever a socket shut down under it raises
            self._fail(e, opening=False)
            return
        if self._abort_reason is None and self._finish_reason is None and self._usage is None:
            raise OpenAIBackendError(f"{self._engine.base_url} closed the stream before the answer finished")

    def _chunk(self, chunk: ChatCompletionChunk) -> Iterator[str]:
        self._usage = chunk.usage or self._usage
        for choice in chunk.choices or []:  # one (Ember asks for n=1)
            if choice.delta and isinstance(choice.delta.content, str) and choice.delta.content:
                yield choice.delta.content
            for call in (choice.delta and choice.delta.tool_calls) or []:
                names, pieces = self._calls.setdefault(call.index or 0, ([], []))
                if call.function is not None:
                    names.append(call.function.name or "")  # vLLM sends it once; joined in case it is split
                    pieces.append(call.function.arguments or "")
            if choice.finish_reason:
                self._finish_reason = _FINISH_REASONS.get(str(choice.finish_reason), "stop")

    def _whole_answer(self, stream: openai.Stream[ChatCompletionChunk]) -> Iterator[str]:
        """A server that ignored `stream: true` and sent one JSON completion."""
        payload = json.loads(stream.response.read())
        choice = payload["choices"][0]
        calls = choice["message"].get("tool_calls") or []
        self._calls = {i: ([c["function"]["name"]], [c["function"]["arguments"]]) for i, c in enumerate(calls)}
        self._usage, self._finish_reason = (
            payload.get("usage"),
            _FINISH_REASONS.get(choice.get("finish_reason"), "stop"),
        )
        if choice["message"].get("content"):
            yield str(choice["message"]["content"])

    def _finish(self, failed: bool) -> None:
        with self._state:
            if self._completion is not None:
                return
            self._finished = True
        if self._timer is not None:
            self._timer.cancel()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        self._engine._release(self)
        text, started = "".join(self._parts), self._started
        prompt_tokens = _usage_count(self._usage, "prompt_tokens") or self._shape.prompt_tokens
        calls = [{"name": "".join(n), "arguments": _arguments("".join(a))} for _, (n, a) in sorted(self._calls.items())]
        self._completion = Completion(
            text=text,
            model_version=self._version,
            prompt_tokens=prompt_tokens,
            completion_tokens=_usage_count(self._usage, "completion_tokens") or self._engine._count_text(text),
            seconds=time.perf_counter() - started,
            prompt=dataclasses.replace(self._shape, prompt_tokens=prompt_tokens),
            finish_reason=self._abort_reason or ("error" if failed else self._finish_reason or "stop"),
            time_to_first_token=None if self._first_token is None else self._first_token - started,
            tool_calls=tuple(calls),
        )


def _base_url(url: str) -> str:
    """`http://host:8000`, `http://host:8000/` and `http://host:8000/v1` all name the same server."""
    url = url.strip().rstrip("/").removesuffix("/v1")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the OpenAI-compatible server's URL must start with http:// or https://, not {url!r}")
    return url


def _arguments(text: str) -> dict[str, Any] | str:
    """Tool-call arguments as a dict; the raw text when they are not a JSON object (the model is told)."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _describe_error(payload: object, fallback: str) -> str:
    """The message of an OpenAI-style error body (the client hands over its `error` object)."""
    error = payload.get("error", payload) if isinstance(payload, Mapping) else payload
    if isinstance(error, Mapping):
        error = error.get("message") or error.get("detail")
    return str(error).strip()[:500] if error else fallback


def _usage_count(usage: object, name: str) -> int | None:
    """A count from the server's `usage` (an object in a stream, a dict in a whole answer)."""
    value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _on_the_wire(message: Message) -> Message:
    """The OpenAI API wants tool-call arguments as a JSON string; chat templates (and the agent) use a dict."""
    if not message.get("tool_calls"):
        return message
    calls = [{"type": "function", **call, "function": dict(call.get("function", {}))} for call in message["tool_calls"]]
    for function in (call["function"] for call in calls):
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {})
    return {**message, "tool_calls": calls}


if TYPE_CHECKING:  # mypy checks that OpenAIEngine is an LLM, and so that its streams are TokenStreams
    _is_an_llm: type[LLM] = OpenAIEngine
