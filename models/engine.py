"""The resident engine: one model per process, continuously batched, streamed, hot-swappable.

Lifecycle: `Engine.load(source)` (or `Engine(model, tokenizer, version=...)` with weights you built),
then `stream(...)`/`generate(...)` from any number of threads, `swap(location, version=...)` to take
new weights without dropping a request, and `close()`.

Batching is transformers' continuous batching manager (a paged KV cache; new requests join the
running batch at the next step instead of waiting for it to drain). Each loaded version gets its
own manager and a router thread that hands every output to the request that asked for it.
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from models import loading
from models.base import Completion, FinishReason, Message, PromptInfo, SwapError, Tools, drain
from models.loops import MIN_SPAN, hold_from, loop_start
from models.prompt import fit, render, template_supports_tools

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PAGE_SIZE = 256
DEFAULT_KV_CACHE_TOKENS = 32_768
_FINISHED = object()


@dataclass(frozen=True)
class EngineConfig:
    max_context_tokens: int = 0  # 0: the model's own window
    kv_cache_tokens: int = DEFAULT_KV_CACHE_TOKENS  # paged KV cache size, shared by all requests in flight
    max_batch_tokens: int = 2048  # tokens per forward step (prefill chunks plus one per decoding request)
    stop_loops: bool = True  # end an answer that repeats itself (models/loops.py); greedy answers that do not are kept


class EngineClosed(RuntimeError):
    pass


class _Version:
    """One loaded set of weights with its own batching manager. Retired after a swap; freed when idle."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, version: str, config: EngineConfig
    ) -> None:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        # Asked of the template once: a fine-tune keeps its base's tokenizer, but a swap may bring another.
        self.supports_tools = template_supports_tools(tokenizer)
        eos = model.generation_config.eos_token_id
        generation = GenerationConfig(
            do_sample=False,
            eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        batching = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=max(2, -(-config.kv_cache_tokens // PAGE_SIZE)),
            max_batch_tokens=config.max_batch_tokens,
            # Prefix sharing re-orders requests to reuse blocks; Ember's prompts rarely share long prefixes.
            allow_block_sharing=False,
        )
        self.manager: Any = cast(Any, model).init_continuous_batching(
            generation_config=generation, continuous_batching_config=batching
        )
        self.manager.start()
        self._routes: dict[str, queue.SimpleQueue[Any]] = {}
        self._lock = threading.Lock()
        self.active = 0
        self.retired = False
        self._stop = threading.Event()
        self._router = threading.Thread(target=self._route, name=f"ember-router-{version}", daemon=True)
        self._router.start()

    def submit(self, request_id: str, input_ids: list[int], max_new_tokens: int) -> queue.SimpleQueue[Any]:
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            self._routes[request_id] = inbox
            self.active += 1
        added = self.manager.add_request(
            input_ids, request_id=request_id, max_new_tokens=max_new_tokens, streaming=True
        )
        if added is None:
            self.release(request_id)
            raise RuntimeError(f"model {self.version} is not accepting requests")
        return inbox

    def cancel(self, request_id: str) -> None:
        self.manager.cancel_request(request_id)

    def release(self, request_id: str) -> bool:
        """Forget a finished request; True when this retired version has nothing left to run."""
        with self._lock:
            if self._routes.pop(request_id, None) is not None:
                self.active -= 1
            return self.retired and self.active == 0

    def _route(self) -> None:
        while not self._stop.is_set():
            output = self.manager.get_result(timeout=0.1)
            if output is None:
                if not self.manager.is_running() and not self._stop.is_set():
                    self._fail_all("the batching thread stopped unexpectedly")
                    return
                continue
            with self._lock:
                inbox = self._routes.get(output.request_id)
            if inbox is not None:
                inbox.put(output)

    def _fail_all(self, reason: str) -> None:
        log.error("model %s: %s", self.version, reason)
        with self._lock:
            inboxes = list(self._routes.values())
        for inbox in inboxes:
            inbox.put(RuntimeError(reason))

    def close(self) -> None:
        self._stop.set()
        self.manager.stop(block=True, timeout=30)
        self._router.join(timeout=5)
        destroy = getattr(self.model, "destroy_cached_continuous_batching_manager", None)
        if destroy is not None:
            destroy()
        del self.manager
        del self.model


class Engine:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        version: str,
        device: str = "cpu",
        config: EngineConfig | None = None,
        on_finish: Callable[[Completion], None] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.device = device
        self.on_finish = on_finish
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self.swaps = 0
        self._current = _Version(model, tokenizer, version, self.config)
        self._retired: list[_Version] = []

    @classmethod
    def load(cls, source: loading.ModelSource, *, device: str = "auto", config: EngineConfig | None = None) -> Engine:
        started = time.perf_counter()
        model, tokenizer, resolved = loading.load(source, device)
        log.info("loaded model %s on %s in %.1f s", source.version, resolved, time.perf_counter() - started)
        return cls(model, tokenizer, version=source.version, device=resolved, config=config)

    # -- what callers see -------------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self._current.version

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._current.tokenizer

    @property
    def context_window(self) -> int:
        model_window = int(getattr(self._current.model.config, "max_position_embeddings", 0) or 2048)
        cap = self.config.max_context_tokens
        return min(model_window, cap) if cap else model_window

    @property
    def supports_tools(self) -> bool:
        return self._current.supports_tools

    def count_tokens(self, messages: Sequence[Message], *, tools: Tools = None) -> int:
        return len(render(self.tokenizer, messages, tools=tools))

    @property
    def queue_depth(self) -> int:
        with self._lock:
            versions = [self._current, *self._retired]
        return sum(version.active for version in versions)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> Stream:
        budget = self.context_window - max_new_tokens
        if budget <= 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room in a {self.context_window}-token window")
        # Versions of one model share a tokenizer, so fitting needs no lock; submitting does, so that a
        # request never lands on a version a concurrent swap has just retired.
        fitted = fit(self.tokenizer, messages, budget, tools=tools)
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is closed")
            version = self._current
            request_id = f"r{next(self._ids)}"
            inbox = version.submit(request_id, fitted.input_ids, max_new_tokens)
        prompt = PromptInfo(
            prompt_tokens=len(fitted.input_ids),
            dropped_messages=fitted.dropped_messages,
            question_chars=fitted.question_chars,
            question_chars_kept=fitted.question_chars_kept,
        )
        deadline = time.monotonic() + timeout if timeout is not None else None
        return Stream(self, version, request_id, inbox, prompt, tuple(stop), deadline, max_new_tokens)

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
        """Load new weights beside the old; new requests go to them, running ones finish on the old."""
        try:
            model, tokenizer, _ = loading.load(loading.ModelSource(location, version), self.device)
            incoming = _Version(model, tokenizer, version, self.config)
        except Exception as exc:
            log.exception("swap to %s failed; still serving %s", version, self.version)
            raise SwapError(f"could not load {location!r}: {exc}") from exc
        with self._lock:
            if self._closed:
                incoming.close()
                raise EngineClosed("the engine is closed")
            outgoing, self._current = self._current, incoming
            outgoing.retired = True
            idle = outgoing.active == 0
            if not idle:
                self._retired.append(outgoing)
            self.swaps += 1
        log.info("now serving %s (was %s)", version, outgoing.version)
        if idle:
            self._free(outgoing)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            versions = [self._current, *self._retired]
            self._retired = []
        for version in versions:
            version.close()
        _release_memory()

    # -- bookkeeping for streams ------------------------------------------------------------------

    def _finished(self, version: _Version, request_id: str, completion: Completion) -> None:
        if version.release(request_id) and self._take_retired(version):
            self._free(version)
        if self.on_finish is not None:
            try:
                self.on_finish(completion)
            except Exception:
                log.exception("on_finish observer failed")

    def _take_retired(self, version: _Version) -> bool:
        """Claim a drained retired version for freeing; False if another thread already did."""
        with self._lock:
            if version not in self._retired:
                return False
            self._retired.remove(version)
            return True

    def _free(self, version: _Version) -> None:
        version.close()
        _release_memory()
        log.info("released model %s", version.version)


def _common_prefix(a: str, b: str) -> int:
    """How many leading characters two strings share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _release_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Stream:
    """One request in flight. Iterate for text deltas; then `completion` holds the whole answer."""

    def __init__(
        self,
        engine: Engine,
        version: _Version,
        request_id: str,
        inbox: queue.SimpleQueue[Any],
        prompt: PromptInfo,
        stop: tuple[str, ...],
        deadline: float | None,
        max_new_tokens: int,
    ) -> None:
        self._engine, self._version, self._id, self._inbox = engine, version, request_id, inbox
        self._prompt, self._stop, self._deadline, self._max_new = prompt, stop, deadline, max_new_tokens
        self._started = time.perf_counter()
        self._first_token: float | None = None
        self._tokens: list[int] = []
        self._text = ""
        self._emitted = 0
        self._cancelled = threading.Event()
        self._completion: Completion | None = None
        self._iterator: Iterator[str] | None = None
        self._stop_loops = engine.config.stop_loops
        self._looked = 0  # tokens already checked for a loop
        self.looped = False  # the answer was ended because it had started to repeat itself

    @property
    def completion(self) -> Completion:
        if self._completion is None:
            raise RuntimeError("the stream has not finished yet")
        return self._completion

    def cancel(self) -> None:
        self._cancelled.set()
        self._inbox.put(_FINISHED)

    def __iter__(self) -> Iterator[str]:
        # One generator per request: iterating again continues (or finds finished) the same stream.
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    def _run(self) -> Iterator[str]:
        reason: FinishReason = "error"
        try:
            reason = yield from self._pump()
        except GeneratorExit:
            reason = "cancelled"  # the caller stopped reading
            raise
        finally:
            if reason != "stop" and reason != "length":
                self._version.cancel(self._id)
            self._complete(reason)

    def _pump(self) -> Generator[str, None, FinishReason]:
        while True:
            if self._cancelled.is_set():
                return "cancelled"
            wait = None if self._deadline is None else self._deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return "deadline"
            try:
                output = self._inbox.get(timeout=wait)
            except queue.Empty:
                return "deadline"
            if output is _FINISHED:
                return "cancelled"
            if isinstance(output, Exception):
                raise output
            if output.error:
                raise RuntimeError(f"generation failed: {output.error}")
            delta, stopped = self._advance(list(output.generated_tokens))
            if delta:
                yield delta
            if stopped:
                if self.looped and not output.is_finished():
                    self._version.cancel(self._id)  # the model would go on repeating to the token limit
                return "stop"
            if output.is_finished():
                tail = self._flush()
                if tail:
                    yield tail
                return "length" if len(self._tokens) >= self._max_new and not self._ends_with_eos() else "stop"

    def _advance(self, tokens: list[int]) -> tuple[str, bool]:
        """Decode what is new; hold back text that might be the start of a stop string or a split character."""
        if tokens and self._first_token is None:
            self._first_token = time.perf_counter()
        if self._stop_loops:
            # Outputs may bring several tokens at once: look at every end since the last look, so the
            # first loop is found even if the model wandered off it again.
            for end in range(max(self._looked + 1, MIN_SPAN), len(tokens) + 1):
                cut = loop_start(tokens[:end], wordy=self._wordy)
                if cut is not None:  # said once is enough: end the answer after the loop's first unit
                    self.looped = True
                    tokens = tokens[:cut]
                    break
            self._looked = len(tokens)
        self._tokens = tokens
        self._text = self._decode(tokens)
        for marker in self._stop:
            at = self._text.find(marker)
            if at >= 0:
                self._text = self._text[:at]
                return self._take(len(self._text)), True
        if self.looped:
            return self._take(len(self._text)), True
        safe = len(self._text)
        if self._stop_loops and (hold := hold_from(tokens)) < len(tokens):
            # What repeats the tokens before it may be cut if it turns into a loop: not shown yet.
            shown = self._decode(tokens[:hold])
            safe = _common_prefix(shown, self._text)
        if self._text[:safe].endswith("\ufffd"):
            safe -= 1
        for marker in self._stop:
            for size in range(min(len(marker) - 1, safe), 0, -1):
                if self._text[:safe].endswith(marker[:size]):
                    safe -= size
                    break
        return self._take(safe), False

    def _wordy(self, unit: Sequence[int]) -> bool:
        """Whether a repeated unit holds a word: "0" or "|---" repeated is a number or a table, not a loop."""
        return any(ch.isalpha() for ch in self._decode(list(unit)))

    def _decode(self, tokens: list[int]) -> str:
        return str(self._version.tokenizer.decode(tokens, skip_special_tokens=True))

    def _take(self, upto: int) -> str:
        if upto <= self._emitted:
            return ""
        delta = self._text[self._emitted : upto]
        self._emitted = upto
        return delta

    def _flush(self) -> str:
        return self._take(len(self._text))

    def _ends_with_eos(self) -> bool:
        eos = self._version.manager.generation_config.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        return bool(self._tokens) and self._tokens[-1] in eos_ids

    def _complete(self, reason: FinishReason) -> None:
        now = time.perf_counter()
        self._completion = Completion(
            text=self._text.strip(),
            model_version=self._version.version,
            prompt_tokens=self._prompt.prompt_tokens,
            completion_tokens=len(self._tokens),
            seconds=now - self._started,
            prompt=self._prompt,
            finish_reason=reason,
            time_to_first_token=None if self._first_token is None else self._first_token - self._started,
            token_ids=tuple(self._tokens),
        )
        self._engine._finished(self._version, self._id, self._completion)
