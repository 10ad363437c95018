"""The OpenAI-compatible backend against a real server: the tests' `serve_openai` in front of a real
tiny transformers model, over real HTTP. A few protocol corners use a raw socket-level stand-in."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from models.base import Completion, FinishReason, Message, PromptInfo, SwapError, TokenStream
from models.openai_backend import OpenAIBackendError, OpenAIEngine
from models.prompt import fit, render
from tests.support.chat_templates import QWEN2_5_INSTRUCT
from tests.support.openai_server import OpenAIServer, serve_openai

QUESTION: list[Message] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a VPN?"}]
WAIT = 30  # seconds; an upper bound for things that happen at once, never a measured duration
SEARCH: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search_memory",
        "description": "Search what the team said before.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


# --- a real LLM for the server: transformers greedy generation on a tiny model ------------------


class _TransformersLLM:
    """The `LLM` protocol over `model.generate` + `TextIteratorStreamer`; records what it was asked."""

    def __init__(self, model_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.version = model_dir.name
        self.context_window = 512
        self.requests: list[tuple[str, list[Message], tuple[str, ...]]] = []
        self.swaps: list[tuple[str, str]] = []
        self.queue_depth = 0

    def stream(self, messages, *, max_new_tokens, stop=(), timeout=None) -> _TransformersStream:
        self.requests.append((self.version, list(messages), tuple(stop)))
        return _TransformersStream(self, messages, max_new_tokens, tuple(stop))

    def generate(self, messages, *, max_new_tokens, stop=(), timeout=None) -> Completion:
        stream = self.stream(messages, max_new_tokens=max_new_tokens, stop=stop)
        for _ in stream:
            pass
        return stream.completion

    def swap(self, location: str, *, version: str) -> None:
        try:
            self.model = AutoModelForCausalLM.from_pretrained(location).eval()
        except (OSError, ValueError) as e:
            raise SwapError(f"cannot load {location}: {e}") from e
        self.version = version
        self.swaps.append((location, version))

    def close(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)  # type: ignore[return-value]


class _TransformersStream:
    def __init__(self, llm: _TransformersLLM, messages: Sequence[Message], max_new_tokens: int, stop: tuple[str, ...]):
        self.llm, self.version, self.stop, self.max_new_tokens = llm, llm.version, stop, max_new_tokens
        self.ids = torch.tensor([render(llm.tokenizer, messages)])
        self.streamer = TextIteratorStreamer(llm.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.cancelled = threading.Event()
        self.output: torch.Tensor | None = None
        self._completion: Completion | None = None
        self.thread = threading.Thread(target=self._generate, args=(llm.model,), daemon=True)
        self.thread.start()

    def _generate(self, model: Any) -> None:
        with torch.inference_mode():
            self.output = model.generate(
                self.ids,
                attention_mask=torch.ones_like(self.ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                streamer=self.streamer,
                stopping_criteria=StoppingCriteriaList([_Cancelled(self.cancelled)]),
            )

    def __iter__(self) -> Iterator[str]:
        text, emitted = "", 0
        reason: FinishReason | None = None
        hold = max((len(s) for s in self.stop), default=1) - 1  # a stop string may straddle two pieces
        for piece in self.streamer:
            text += piece
            cuts = [text.find(s) for s in self.stop if s in text]
            if cuts:
                text, reason = text[: min(cuts)], "stop"
                self.cancelled.set()
                break
            if not self.cancelled.is_set() and len(text) - hold > emitted:
                yield text[emitted : len(text) - hold]
                emitted = len(text) - hold
        if (reason == "stop" or not self.cancelled.is_set()) and len(text) > emitted:
            yield text[emitted:]
        self.thread.join()
        assert self.output is not None
        generated = self.output.shape[1] - self.ids.shape[1]
        if reason is None:
            reason = (
                "cancelled" if self.cancelled.is_set() else "length" if generated >= self.max_new_tokens else "stop"
            )
        prompt = PromptInfo(self.ids.shape[1])
        self._completion = Completion(text, self.version, self.ids.shape[1], generated, 0.0, prompt, reason)

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def completion(self) -> Completion:
        if self._completion is None:
            raise RuntimeError("not finished")
        return self._completion


class _Stalling:
    """Wraps an LLM: its streams give the first delta, then wait until cancelled (a request stuck mid-answer)."""

    def __init__(self, inner: _TransformersLLM) -> None:
        self.inner, self.version, self.queue_depth = inner, inner.version, 0
        self.cancelled = threading.Event()

    def stream(self, messages, *, max_new_tokens, stop=(), timeout=None) -> _StallingStream:
        return _StallingStream(self, self.inner.stream(messages, max_new_tokens=max_new_tokens, stop=stop))

    def generate(self, messages, *, max_new_tokens, stop=(), timeout=None) -> Completion:
        raise NotImplementedError

    def swap(self, location: str, *, version: str) -> None:
        raise SwapError("no")

    def close(self) -> None:
        pass


class _StallingStream:
    def __init__(self, owner: _Stalling, inner: TokenStream) -> None:
        self.owner, self.inner, self.released = owner, inner, threading.Event()

    def __iter__(self) -> Iterator[str]:
        deltas = iter(self.inner)
        yield next(deltas)
        cancelled = self.released.wait(WAIT)
        self.inner.cancel()
        for _ in deltas:
            pass
        if cancelled:
            self.owner.cancelled.set()

    def cancel(self) -> None:
        self.released.set()

    @property
    def completion(self) -> Completion:
        return dataclasses.replace(self.inner.completion, finish_reason="cancelled")


class _Broken:
    """An LLM that fails: at the start of an answer, or after its first delta."""

    def __init__(self, inner: _TransformersLLM, *, midway: bool) -> None:
        self.inner, self.midway, self.version, self.queue_depth = inner, midway, inner.version, 0

    def stream(self, messages, *, max_new_tokens, stop=(), timeout=None) -> Any:
        if not self.midway:
            raise RuntimeError("CUDA error: device-side assert triggered")
        inner = self.inner.stream(messages, max_new_tokens=max_new_tokens, stop=stop)

        class Stream:
            def __iter__(self) -> Iterator[str]:
                yield next(iter(inner))
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

            def cancel(self) -> None:
                inner.cancel()

            completion = None

        return Stream()

    def generate(self, messages, *, max_new_tokens, stop=(), timeout=None) -> Completion:
        raise NotImplementedError

    def swap(self, location: str, *, version: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Calling:
    """Wraps an LLM: its answers also call tools (what vLLM's tool parser pulls out of a reply), and it
    records the tools each request offered."""

    def __init__(self, inner: _TransformersLLM, calls: tuple[dict[str, Any], ...]) -> None:
        self.inner, self.calls, self.version, self.queue_depth = inner, calls, inner.version, 0
        self.offered: list[Any] = []

    def stream(self, messages, *, max_new_tokens, stop=(), timeout=None, tools=None) -> Any:
        self.offered.append(tools)
        inner, calls = self.inner.stream(messages, max_new_tokens=max_new_tokens, stop=stop), self.calls

        class Stream:
            def __iter__(self) -> Iterator[str]:
                return iter(inner)

            def cancel(self) -> None:
                inner.cancel()

            @property
            def completion(self) -> Completion:
                # A model stops once it has written its calls (vLLM's parser then takes them out of the text).
                return dataclasses.replace(inner.completion, tool_calls=calls, finish_reason="stop")

        return Stream()

    def generate(self, messages, *, max_new_tokens, stop=(), timeout=None, tools=None) -> Completion:
        raise NotImplementedError

    def swap(self, location: str, *, version: str) -> None:
        pass

    def close(self) -> None:
        pass


# --- fixtures ---------------------------------------------------------------------------------


def chatty(source: Path, target: Path, tokenizer: PreTrainedTokenizerBase, *, seed: int) -> Path:
    """A copy of a tiny test model with larger random weights.

    A freshly initialised tiny model repeats one token ("\\n\\n\\n..."); with weights of std 0.5 it
    writes varied words, so equal texts, several deltas and stop strings mean something.
    """
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(source)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0.0, 0.5)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> Path:
    return chatty(tiny_model_dir, tmp_path_factory.mktemp("chatty") / "tiny-llama", tokenizer, seed=0)


@pytest.fixture()
def llm(model_dir: Path, tokenizer: PreTrainedTokenizerBase) -> _TransformersLLM:
    return _TransformersLLM(model_dir, tokenizer)


@pytest.fixture()
def server(llm: _TransformersLLM) -> Iterator[OpenAIServer]:
    with serve_openai(llm) as running:
        yield running


@pytest.fixture()
def engine(server: OpenAIServer, llm: _TransformersLLM) -> Iterator[OpenAIEngine]:
    client = OpenAIEngine(server.url, model=llm.version, context_window=512)
    yield client
    client.close()


def greedy(model_dir: Path, tokenizer: PreTrainedTokenizerBase, messages: list[Message], n: int) -> tuple[str, int]:
    """What transformers itself generates greedily: (text, number of new tokens)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([render(tokenizer, messages)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    new = out[0, ids.shape[1] :].tolist()
    return str(tokenizer.decode(new, skip_special_tokens=True)), len(new)


# --- answers ----------------------------------------------------------------------------------


def test_generate_answers_like_transformers_greedy(
    engine: OpenAIEngine, llm: _TransformersLLM, model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    expected, new_tokens = greedy(model_dir, tokenizer, QUESTION, 12)
    completion = engine.generate(QUESTION, max_new_tokens=12)

    assert expected.strip()
    assert completion.text == expected
    assert completion.completion_tokens == new_tokens  # from the server's usage
    assert completion.prompt_tokens == len(render(tokenizer, QUESTION))
    assert completion.prompt == PromptInfo(completion.prompt_tokens, 0, len("What is a VPN?"), len("What is a VPN?"))
    assert completion.model_version == llm.version == "tiny-llama"
    assert completion.finish_reason == ("length" if new_tokens == 12 else "stop")
    assert completion.time_to_first_token is not None and completion.time_to_first_token <= completion.seconds
    assert llm.requests == [("tiny-llama", QUESTION, ())]
    assert engine.queue_depth == 0


def test_streaming_yields_deltas_that_join_to_the_answer(engine: OpenAIEngine) -> None:
    stream = engine.stream(QUESTION, max_new_tokens=24)
    assert engine.queue_depth == 1
    deltas = list(stream)
    assert len(deltas) > 2
    assert all(deltas)
    assert "".join(deltas) == stream.completion.text
    assert stream.completion.completion_tokens > 0
    assert engine.queue_depth == 0
    assert list(stream) == [], "iterating a finished stream again yields nothing more"


def test_completion_is_not_ready_before_the_stream_is_read(engine: OpenAIEngine) -> None:
    stream = engine.stream(QUESTION, max_new_tokens=4)
    with pytest.raises(RuntimeError, match="iterated"):
        _ = stream.completion
    for _ in stream:
        pass
    assert stream.completion.text


def test_stop_strings_are_passed_through(
    engine: OpenAIEngine, llm: _TransformersLLM, model_dir: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    full, _ = greedy(model_dir, tokenizer, QUESTION, 24)
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    completion = engine.generate(QUESTION, max_new_tokens=24, stop=[stop, "never-generated"])

    assert llm.requests[-1][2] == (stop, "never-generated")
    assert completion.text == full[: full.index(stop)]
    assert completion.finish_reason == "stop"


def test_many_threads_at_once(engine: OpenAIEngine, model_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    expected, _ = greedy(model_dir, tokenizer, QUESTION, 8)
    results: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            results.append(engine.generate(QUESTION, max_new_tokens=8).text)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not errors
    assert results == [expected] * 6
    assert engine.queue_depth == 0


# --- cancel and deadline ----------------------------------------------------------------------


@pytest.fixture()
def stalling(llm: _TransformersLLM) -> Iterator[tuple[_Stalling, OpenAIEngine]]:
    stuck = _Stalling(llm)
    with serve_openai(stuck) as running:
        client = OpenAIEngine(running.url, model=llm.version, context_window=512)
        yield stuck, client
        client.close()


def test_cancel_mid_stream_closes_the_request(stalling: tuple[_Stalling, OpenAIEngine]) -> None:
    stuck, engine = stalling
    stream = engine.stream(QUESTION, max_new_tokens=64)
    deltas = iter(stream)
    first = next(deltas)
    threading.Timer(0.2, stream.cancel).start()  # from another thread, while this one is blocked reading
    rest = list(deltas)

    assert rest == []
    assert stream.completion.finish_reason == "cancelled"
    assert stream.completion.text == first
    assert engine.queue_depth == 0
    assert stuck.cancelled.wait(WAIT), "the server did not cancel the answer when the client hung up"


def test_a_deadline_ends_the_answer_with_what_came_so_far(stalling: tuple[_Stalling, OpenAIEngine]) -> None:
    stuck, engine = stalling
    completion = engine.generate(QUESTION, max_new_tokens=64, timeout=0.5)

    assert completion.finish_reason == "deadline"
    assert completion.text
    assert engine.queue_depth == 0
    assert stuck.cancelled.wait(WAIT)


def test_close_cancels_requests_in_flight(stalling: tuple[_Stalling, OpenAIEngine]) -> None:
    stuck, engine = stalling
    stream = engine.stream(QUESTION, max_new_tokens=64)
    deltas = iter(stream)
    next(deltas)
    engine.close()
    assert list(deltas) == []
    assert stream.completion.finish_reason == "cancelled"
    assert stuck.cancelled.wait(WAIT)
    with pytest.raises(OpenAIBackendError, match="closed"):
        engine.generate(QUESTION, max_new_tokens=4)


# --- errors -----------------------------------------------------------------------------------


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = OpenAIEngine(f"http://127.0.0.1:{port}/v1", model="m", context_window=512)
    with pytest.raises(OpenAIBackendError, match=rf"cannot reach .*127\.0\.0\.1:{port}"):
        engine.generate(QUESTION, max_new_tokens=4)
    assert engine.queue_depth == 0


@pytest.mark.parametrize("midway", [False, True])
def test_a_failing_model_is_a_clear_error(llm: _TransformersLLM, midway: bool) -> None:
    with serve_openai(_Broken(llm, midway=midway)) as running:
        engine = OpenAIEngine(running.url, model=llm.version, context_window=512)
        if midway:
            stream = engine.stream(QUESTION, max_new_tokens=8)
            with pytest.raises(OpenAIBackendError, match=r"failed mid-answer.*illegal memory access"):
                for _ in stream:
                    pass
            assert stream.completion.finish_reason == "error"
        else:
            with pytest.raises(OpenAIBackendError, match=r"HTTP 500.*device-side assert") as caught:
                engine.generate(QUESTION, max_new_tokens=8)
            assert caught.value.status == 500
        assert engine.queue_depth == 0


def test_an_unknown_model_name_is_a_clear_error(server: OpenAIServer) -> None:
    engine = OpenAIEngine(server.url, model="gpt-17", context_window=512)
    with pytest.raises(OpenAIBackendError, match=r"HTTP 404.*gpt-17"):
        engine.generate(QUESTION, max_new_tokens=4)


def test_api_key(llm: _TransformersLLM) -> None:
    with serve_openai(llm, api_key="sk-ember") as running:
        good = OpenAIEngine(running.url, model=llm.version, api_key="sk-ember", context_window=512)
        assert good.generate(QUESTION, max_new_tokens=2).text
        bad = OpenAIEngine(running.url, model=llm.version, api_key="sk-other", context_window=512)
        with pytest.raises(OpenAIBackendError, match="HTTP 401"):
            bad.generate(QUESTION, max_new_tokens=2)


# --- swapping LoRA versions -------------------------------------------------------------------


def test_swap_loads_the_adapter_and_later_requests_use_its_name(
    engine: OpenAIEngine,
    llm: _TransformersLLM,
    server: OpenAIServer,
    model_dir: Path,
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    other = chatty(model_dir, tmp_path / "v2-weights", tokenizer, seed=1)
    expected, _ = greedy(other, tokenizer, QUESTION, 12)
    engine.swap(str(other), version="ember-v2")

    assert llm.swaps == [(str(other), "ember-v2")]
    assert engine.version == engine.model == "ember-v2"
    completion = engine.generate(QUESTION, max_new_tokens=12)
    assert completion.model_version == "ember-v2"
    assert llm.requests[-1][0] == "ember-v2"
    assert completion.text == expected
    # The old name is gone on the server, so the request above really asked for the new one.
    old = requests.post(
        f"{server.url}/v1/chat/completions", json={"model": "tiny-llama", "messages": QUESTION}, timeout=WAIT
    )
    assert old.status_code == 404


def test_a_failing_swap_raises_and_keeps_the_old_model(
    engine: OpenAIEngine, llm: _TransformersLLM, tmp_path: Path
) -> None:
    with pytest.raises(SwapError, match=r"HTTP 400.*cannot load"):
        engine.swap(str(tmp_path / "missing"), version="ember-v2")
    assert engine.version == engine.model == "tiny-llama"
    assert llm.swaps == []
    assert engine.generate(QUESTION, max_new_tokens=4).model_version == "tiny-llama"


def test_a_swap_against_an_unreachable_server_raises_swap_error() -> None:
    engine = OpenAIEngine("http://127.0.0.1:9/", model="base", context_window=512)
    with pytest.raises(SwapError, match="could not reach"):
        engine.swap("/adapters/v2", version="v2")
    assert engine.model == "base"


# --- fitting the prompt -----------------------------------------------------------------------

LONG_CHAT: list[Message] = [
    {"role": "system", "content": "Be brief."},
    *[{"role": r, "content": f"turn {i} " + "blah " * 30} for i, r in enumerate(["user", "assistant"] * 3)],
    {"role": "user", "content": "And the question?"},
]


def test_prompt_is_fitted_with_the_tokenizer(
    server: OpenAIServer, llm: _TransformersLLM, tokenizer: PreTrainedTokenizerBase
) -> None:
    engine = OpenAIEngine(server.url, model=llm.version, tokenizer=tokenizer, context_window=160)
    fitted = fit(tokenizer, LONG_CHAT, 160 - 8)
    assert 0 < fitted.dropped_messages < 6
    completion = engine.generate(LONG_CHAT, max_new_tokens=8)

    sent = llm.requests[-1][1]
    assert sent == [LONG_CHAT[0], *LONG_CHAT[1 + fitted.dropped_messages :]]
    assert completion.prompt.dropped_messages == fitted.dropped_messages
    assert not completion.prompt.question_cut
    assert completion.prompt_tokens == len(fitted.input_ids) == len(render(tokenizer, sent))


def test_a_question_too_long_is_cut_with_the_tokenizer(
    server: OpenAIServer, llm: _TransformersLLM, tokenizer: PreTrainedTokenizerBase
) -> None:
    engine = OpenAIEngine(server.url, model=llm.version, tokenizer=tokenizer, context_window=128)
    question = "word " * 500
    completion = engine.generate([{"role": "user", "content": question}], max_new_tokens=8)

    sent = llm.requests[-1][1]
    assert completion.prompt.question_cut
    assert completion.prompt.question_chars == len(question)
    assert sent == [{"role": "user", "content": question[: completion.prompt.question_chars_kept]}]
    assert completion.prompt_tokens <= 120


def test_without_a_tokenizer_the_prompt_is_fitted_by_a_character_estimate(
    server: OpenAIServer, llm: _TransformersLLM
) -> None:
    engine = OpenAIEngine(server.url, model=llm.version, context_window=120)
    completion = engine.generate(LONG_CHAT, max_new_tokens=8)
    sent = llm.requests[-1][1]
    assert sent[0] == LONG_CHAT[0] and sent[-1] == LONG_CHAT[-1]
    assert completion.prompt.dropped_messages == len(LONG_CHAT) - len(sent) > 0
    assert sum(len(m["content"]) for m in sent) <= (120 - 8) * 4

    question = "word " * 500
    completion = engine.generate([{"role": "user", "content": question}], max_new_tokens=8)
    assert completion.prompt.question_cut
    assert llm.requests[-1][1] == [{"role": "user", "content": question[: completion.prompt.question_chars_kept]}]
    assert completion.prompt_tokens > 0  # the server's usage still counts them


def test_the_context_window_is_read_from_the_server(
    server: OpenAIServer, llm: _TransformersLLM, tokenizer: PreTrainedTokenizerBase
) -> None:
    engine = OpenAIEngine(server.url, model=llm.version, tokenizer=tokenizer)
    assert engine.context_window == 512
    completion = engine.generate([{"role": "user", "content": "word " * 2000}], max_new_tokens=8)
    assert completion.prompt.question_cut
    assert completion.prompt_tokens <= 512 - 8


# --- tools and token counts -------------------------------------------------------------------

NOWHERE = "http://127.0.0.1:9"  # constructing an engine connects to nothing


@pytest.fixture()
def qwen(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The packaged tokenizer (a copy) with Qwen2.5-Instruct's tool-capable chat template."""
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = QWEN2_5_INSTRUCT
    return copied


def test_supports_tools_is_given_or_read_from_the_chat_template(
    tokenizer: PreTrainedTokenizerBase, qwen: PreTrainedTokenizerBase
) -> None:
    # Without a tokenizer the client cannot tell whether vLLM runs with a tool parser: no tools then.
    assert not OpenAIEngine(NOWHERE, model="m").supports_tools
    assert not OpenAIEngine(NOWHERE, model="m", tokenizer=tokenizer).supports_tools  # SmolLM2's drops tools
    assert OpenAIEngine(NOWHERE, model="m", tokenizer=qwen).supports_tools
    assert OpenAIEngine(NOWHERE, model="m", supports_tools=True).supports_tools
    assert not OpenAIEngine(NOWHERE, model="m", tokenizer=qwen, supports_tools=False).supports_tools


def test_count_tokens_is_exact_with_a_tokenizer(qwen: PreTrainedTokenizerBase) -> None:
    engine = OpenAIEngine(NOWHERE, model="m", tokenizer=qwen)
    assert engine.count_tokens(QUESTION) == len(render(qwen, QUESTION))
    with_tools = engine.count_tokens(QUESTION, tools=[SEARCH])
    assert with_tools == len(render(qwen, QUESTION, tools=[SEARCH])) > engine.count_tokens(QUESTION)


def test_without_a_tokenizer_count_tokens_estimates_and_the_prompt_is_fitted_by_it(
    canned: tuple[type[_Canned], str],
) -> None:
    # 4 characters a token, 4 tokens around each message, 3 for the opening of the answer.
    bare = OpenAIEngine(NOWHERE, model="m")
    assert bare.count_tokens(QUESTION) == 3 + (4 + 3) + (4 + 4)  # "Be brief." and "What is a VPN?"
    assert bare.count_tokens(QUESTION, tools=[SEARCH]) > bare.count_tokens(QUESTION)

    handler, url = canned
    handler.reply = _sse(_delta("ok", "stop"))
    needed = bare.count_tokens(LONG_CHAT)
    roomy = OpenAIEngine(url, model="served", context_window=needed + 8).generate(LONG_CHAT, max_new_tokens=8)
    assert roomy.prompt.dropped_messages == 0 and handler.seen[-1][0]["messages"] == LONG_CHAT
    tight = OpenAIEngine(url, model="served", context_window=needed + 7).generate(LONG_CHAT, max_new_tokens=8)
    assert tight.prompt.dropped_messages == 1
    assert handler.seen[-1][0]["messages"] == [LONG_CHAT[0], *LONG_CHAT[2:]]


def test_streamed_tool_calls_reach_the_completion(llm: _TransformersLLM) -> None:
    calls = (
        {"name": "search_memory", "arguments": {"query": "VPN setup guide", "limit": 3}},
        {"name": "search_memory", "arguments": '{"query": "unterminated'},  # kept raw: the model is told
    )
    calling = _Calling(llm, calls)
    with serve_openai(calling) as running:
        engine = OpenAIEngine(running.url, model=llm.version, context_window=512, supports_tools=True)
        stream = engine.stream(QUESTION, max_new_tokens=8, tools=[SEARCH])
        deltas = list(stream)

    assert calling.offered == [[SEARCH]]
    assert deltas and "".join(deltas) == stream.completion.text, "the text still streams as deltas"
    assert stream.completion.tool_calls == calls
    assert stream.completion.finish_reason == "stop"  # "tool_calls" on the wire
    assert engine.queue_depth == 0


def test_tool_call_fragments_are_joined_by_index(canned: tuple[type[_Canned], str]) -> None:
    def fragment(index: int, name: str | None, arguments: str, **extra: Any) -> dict[str, Any]:
        call = {"index": index, "function": {"name": name, "arguments": arguments}, **extra}
        return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}

    handler, url = canned
    handler.reply = _sse(
        fragment(0, "search_", '{"que', id="call_a", type="function"),
        fragment(1, "clock", "", id="call_b", type="function"),
        fragment(0, "memory", 'ry": "vpn"}'),  # a name in two pieces, arguments in two, interleaved
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )
    engine = OpenAIEngine(url, model="served", context_window=256, supports_tools=True)
    completion = engine.generate(QUESTION, max_new_tokens=7, tools=[SEARCH])

    assert handler.seen[-1][0]["tools"] == [SEARCH]
    assert completion.tool_calls == (
        {"name": "search_memory", "arguments": {"query": "vpn"}},
        {"name": "clock", "arguments": {}},
    )
    assert (completion.text, completion.finish_reason) == ("", "stop")


def test_the_opening_of_a_request_is_retried(canned: tuple[type[_Canned], str]) -> None:
    handler, url = canned
    handler.statuses, handler.reply = [503, 429], _sse(_delta("Hi", "stop"))
    assert OpenAIEngine(url, model="served", context_window=256).generate(QUESTION, max_new_tokens=7).text == "Hi"
    assert len(handler.seen) == 3

    handler.statuses = [503]
    with pytest.raises(OpenAIBackendError, match="HTTP 503") as caught:
        OpenAIEngine(url, model="served", context_window=256, max_retries=0).generate(QUESTION, max_new_tokens=7)
    assert caught.value.status == 503


def test_a_deadline_that_passes_before_the_server_answers_starts_no_retry(canned: tuple[type[_Canned], str]) -> None:
    handler, url = canned
    handler.delay, handler.reply = 3.0, _sse(_delta("late", "stop"))
    engine = OpenAIEngine(url, model="served", context_window=256)
    completion = engine.generate(QUESTION, max_new_tokens=7, timeout=0.3)

    assert handler.answered == [], "the first attempt waited only until the deadline, not for the server"
    assert (completion.text, completion.finish_reason) == ("", "deadline")
    assert len(handler.seen) == 1, "the client retries a timeout, but not past the deadline"
    assert engine.queue_depth == 0


# --- the server's wire format -----------------------------------------------------------------


def test_server_streams_openai_sse(server: OpenAIServer, llm: _TransformersLLM) -> None:
    body: dict[str, Any] = {
        "model": llm.version,
        "messages": QUESTION,
        "max_tokens": 10,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with requests.post(f"{server.url}/v1/chat/completions", json=body, stream=True, timeout=WAIT) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = [line.decode() for line in response.iter_lines()]

    events = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in events), events
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["model"] == llm.version for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *content, finish, usage = chunks[1:]
    assert content and all(c["choices"][0]["finish_reason"] is None for c in content)
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == llm.generate(QUESTION, max_new_tokens=10).text
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] in ("stop", "length")
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    assert usage["usage"]["completion_tokens"] > 0


def test_server_streams_tool_calls_in_fragments(llm: _TransformersLLM) -> None:
    calls = ({"name": "search_memory", "arguments": {"query": "VPN setup guide"}},)
    with serve_openai(_Calling(llm, calls)) as running:
        body = {"model": llm.version, "messages": QUESTION, "max_tokens": 4, "stream": True, "tools": [SEARCH]}
        with requests.post(f"{running.url}/v1/chat/completions", json=body, stream=True, timeout=WAIT) as response:
            events = [line.decode()[len("data: ") :] for line in response.iter_lines() if line]
    choices = [json.loads(e)["choices"][0] for e in events[:-1]]
    fragments = [c["delta"]["tool_calls"][0] for c in choices if c["delta"].get("tool_calls")]

    assert len(fragments) > 2, fragments
    assert fragments[0]["id"].startswith("call_") and fragments[0]["function"]["name"] == "search_memory"
    assert all(f["index"] == 0 and "name" not in f["function"] for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == json.dumps(calls[0]["arguments"])
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_server_answers_plain_json_and_lists_its_model(server: OpenAIServer, llm: _TransformersLLM) -> None:
    response = requests.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 5},
        timeout=WAIT,
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert (
        answer["choices"][0]["message"]["content"]
        == llm.generate([{"role": "user", "content": "Hi"}], max_new_tokens=5).text
    )
    assert answer["usage"]["completion_tokens"] > 0

    models = requests.get(f"{server.url}/v1/models", timeout=WAIT).json()
    assert models["object"] == "list"
    assert [(m["id"], m["max_model_len"]) for m in models["data"]] == [("tiny-llama", 512)]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
        ("/v1/chat/completions", b"[1, 2]", 400, "JSON object"),
        ("/v1/chat/completions", b'{"model": "tiny-llama"}', 400, "messages"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "messages"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user"}]}', 400, "content"),
        ("/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            400,
            "max_tokens",
        ),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "stop": [1]}', 400, "stop"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', 400, "n=1"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "tools": "x"}', 400, "tools"),
        ("/v1/load_lora_adapter", b'{"lora_name": "v2"}', 400, "lora_path"),
        ("/v1/embeddings", b"{}", 404, "no route"),
    ],
)
def test_server_rejects_malformed_requests(
    server: OpenAIServer, path: str, body: bytes, status: int, message: str
) -> None:
    response = requests.post(
        f"{server.url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=WAIT
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == ("invalid_request_error" if status == 400 else "not_found_error")


def test_server_refuses_a_failing_swap_with_an_openai_error(server: OpenAIServer, tmp_path: Path) -> None:
    response = requests.post(
        f"{server.url}/v1/load_lora_adapter",
        json={"lora_name": "v2", "lora_path": str(tmp_path / "nothing")},
        timeout=WAIT,
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- other servers: a raw stand-in for protocol corners ---------------------------------------


class _Canned(BaseHTTPRequestHandler):
    """Answers every chat request with `reply` (HTTP/1.0, body delimited by closing the connection)."""

    reply: bytes = b""
    content_type = "text/event-stream"
    delay = 0.0  # seconds before answering
    statuses: ClassVar[list[int]] = []  # of the first requests; the rest get 200
    seen: ClassVar[list[tuple[dict[str, Any], str | None]]] = []
    answered: ClassVar[list[int]] = []  # the statuses sent, once sent

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((body, self.headers.get("Authorization")))
        time.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        with contextlib.suppress(OSError):  # a client that gave up has hung up
            self.send_response(status)
            self.send_header("Content-Type", self.content_type)
            self.end_headers()
            self.wfile.write(self.reply)
        self.answered.append(status)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _sse(*events: object, done: bool = True) -> bytes:
    lines = [b"data:" + json.dumps(e).encode() + b"\r\n\r\n" for e in events]  # no space, CRLF: both allowed
    return b": ping\n\n" + b"".join(lines) + (b"data: [DONE]\n\n" if done else b"")


def _delta(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


@pytest.fixture()
def canned() -> Iterator[tuple[type[_Canned], str]]:
    handler = type("Handler", (_Canned,), {"seen": [], "statuses": [], "answered": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_request_shape_and_counting_without_usage(
    canned: tuple[type[_Canned], str], tokenizer: PreTrainedTokenizerBase
) -> None:
    handler, url = canned
    handler.reply = _sse(_delta("Hello"), _delta(" there", "length"))
    engine = OpenAIEngine(url, model="served", api_key="sk-1", tokenizer=tokenizer, context_window=256)
    completion = engine.generate(QUESTION, max_new_tokens=7, stop=["\n\n"])

    body, auth = handler.seen[-1]
    assert auth == "Bearer sk-1"
    assert body == {
        "model": "served",
        "messages": QUESTION,
        "max_tokens": 7,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\n"],
    }
    assert completion.text == "Hello there"
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == len(tokenizer.encode("Hello there", add_special_tokens=False))
    assert completion.prompt_tokens == len(render(tokenizer, QUESTION)) == completion.prompt.prompt_tokens

    bare = OpenAIEngine(url, model="served", context_window=256)
    counted = bare.generate(QUESTION, max_new_tokens=7)
    assert (counted.text, counted.prompt_tokens, counted.completion_tokens) == ("Hello there", 0, 0)


def test_a_stream_cut_short_is_an_error(canned: tuple[type[_Canned], str]) -> None:
    handler, url = canned
    handler.reply = _sse(_delta("Hel"), done=False)
    engine = OpenAIEngine(url, model="served", context_window=256)
    with pytest.raises(OpenAIBackendError, match="closed the stream before the answer finished"):
        engine.generate(QUESTION, max_new_tokens=7)
    assert engine.queue_depth == 0


def test_a_server_that_ignores_stream_true_still_works(canned: tuple[type[_Canned], str]) -> None:
    handler, url = canned
    handler.content_type = "application/json"
    handler.reply = json.dumps(
        {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
        }
    ).encode()
    completion = OpenAIEngine(url, model="served", context_window=256).generate(QUESTION, max_new_tokens=7)
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("Hi!", 11, 2)
