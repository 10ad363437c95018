"""A model whose choices are scripted, behind the real LLM interface: every request is rendered by the
tokenizer's real chat template (so tests see the prompt a model would), and the reply is the next
scripted string, streamed word by word, instead of what weights would say."""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from models.base import Completion, PromptInfo, Tools, drain
from models.prompt import render, template_supports_tools


@dataclass
class Prompted:
    """What one model call received: the messages, the tools, and the prompt the template made of them."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    prompt: str
    timeout: float | None


class ScriptedStream:
    """The scripted reply, word by word, as a model streams it."""

    def __init__(self, completion: Completion) -> None:
        self._completion = completion
        self._done = False

    def __iter__(self) -> Iterator[str]:
        if not self._done:
            self._done = True
            yield from re.findall(r"\s*\S+", self._completion.text)

    def cancel(self) -> None:
        self._done = True

    @property
    def completion(self) -> Completion:
        return self._completion


@dataclass(frozen=True)
class ServerCalls:
    """A reply whose tool calls the server parsed itself (OpenAI's `tool_calls`), not written in the text."""

    calls: tuple[dict[str, Any], ...]


class ScriptedEngine:
    """The LLM interface, answering from a script.

    Like the local engine, it renders each request with the tokenizer's chat template; unlike it,
    the reply is the next scripted string instead of what weights would say.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        replies: Sequence[str | ServerCalls],
        *,
        seconds_per_call: float = 0.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.prompts: list[Prompted] = []
        self.seconds_per_call = seconds_per_call
        self.clock = clock

    @property
    def version(self) -> str:
        return "scripted-1"

    @property
    def queue_depth(self) -> int:
        return 0

    @property
    def context_window(self) -> int:
        return 2048

    @property
    def supports_tools(self) -> bool:
        return template_supports_tools(self.tokenizer)

    def count_tokens(self, messages: Sequence[Mapping[str, Any]], *, tools: Tools = None) -> int:
        return len(render(self.tokenizer, [dict(m) for m in messages], tools=tools))

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> ScriptedStream:
        return ScriptedStream(self.generate(messages, max_new_tokens=max_new_tokens, timeout=timeout, tools=tools))

    def generate(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion:
        sent = copy.deepcopy([dict(m) for m in messages])
        tool_list: list[Any] | None = [dict(t) for t in tools] if tools else None
        prompt = self.tokenizer.apply_chat_template(sent, tools=tool_list, add_generation_prompt=True, tokenize=False)
        assert isinstance(prompt, str)
        self.prompts.append(Prompted(sent, tool_list, prompt, timeout))
        assert self.replies, "the model was asked more often than the script says"
        reply = self.replies.pop(0)
        text, calls = ("", reply.calls) if isinstance(reply, ServerCalls) else (reply, ())
        if self.clock is not None:
            self.clock.now += self.seconds_per_call
        prompt_tokens = len(self.tokenizer.encode(prompt, add_special_tokens=False))
        return Completion(
            text=text,
            model_version=self.version,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(self.tokenizer.encode(text, add_special_tokens=False)),
            seconds=0.0,
            prompt=PromptInfo(prompt_tokens),
            tool_calls=calls,
        )

    def swap(self, location: str, *, version: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PlainEngine(ScriptedEngine):
    """An engine that says it cannot pass tools to its model (an OpenAI-compatible server without a
    tool parser), however able the template."""

    @property
    def supports_tools(self) -> bool:
        return False


class FakeClock:
    """A monotonic clock that moves only when the scripted model "thinks"."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def call(name: str, **arguments: Any) -> str:
    """A tool call exactly as a Qwen2.5 model writes one (its template's own instruction)."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


class RecordedStream(ScriptedStream):
    """A scripted stream that tells its engine when its reader first asks for text."""

    def __init__(self, completion: Completion, on_read: Callable[[], None]) -> None:
        super().__init__(completion)
        self._on_read: Callable[[], None] | None = on_read

    def __iter__(self) -> Iterator[str]:
        if self._on_read is not None:
            self._on_read()
            self._on_read = None
        yield from super().__iter__()


class ReplyingEngine(ScriptedEngine):
    """The LLM interface answering each request with `reply(messages)`, computed from the prompt.

    Replies are cut to `max_new_tokens` as a model's would be. `events` records, in order, each
    `("submit", i)` (the i-th stream() call) and `("read", i)` (its first iteration), so a test can tell
    requests submitted together (batched on a real engine) from requests sent one at a time; `budgets`
    holds each call's (prompt tokens, max_new_tokens).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        reply: Callable[[list[dict[str, Any]]], str],
        *,
        context_window: int = 2048,
    ) -> None:
        super().__init__(tokenizer, [])
        self.reply = reply
        self.window = context_window
        self.events: list[tuple[str, int]] = []
        self.budgets: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    @property
    def context_window(self) -> int:
        return self.window

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> RecordedStream:
        sent = copy.deepcopy([dict(m) for m in messages])
        ids = render(self.tokenizer, sent, tools=tools)
        text = self.reply(sent)
        generated = self.tokenizer.encode(text, add_special_tokens=False)
        cut = len(generated) > max_new_tokens
        if cut:
            text = str(self.tokenizer.decode(generated[:max_new_tokens], skip_special_tokens=True))
        with self._lock:
            index = len(self.prompts)
            self.prompts.append(Prompted(sent, None, str(self.tokenizer.decode(ids)), timeout))
            self.budgets.append((len(ids), max_new_tokens))
            self.events.append(("submit", index))
        completion = Completion(
            text=text.strip(),
            model_version=self.version,
            prompt_tokens=len(ids),
            completion_tokens=min(len(generated), max_new_tokens),
            seconds=0.0,
            prompt=PromptInfo(len(ids)),
            finish_reason="length" if cut else "stop",
        )
        return RecordedStream(completion, lambda: self._read(index))

    def generate(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion:
        return drain(self.stream(messages, max_new_tokens=max_new_tokens, stop=stop, timeout=timeout, tools=tools))

    def _read(self, index: int) -> None:
        with self._lock:
            self.events.append(("read", index))
