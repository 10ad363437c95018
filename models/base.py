"""What every engine backend offers (the local transformers engine, an OpenAI-compatible server).

Handlers and the QA handler depend on this shape only, so a team that outgrows one GPU changes
EMBER_LLM_BACKEND and nothing else. The interface is complete on purpose: callers ask it whether
tools can be offered, how large the window is and how many tokens a prompt takes, instead of
probing an engine's attributes. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# Content is text; an assistant message that called tools also carries `tool_calls` (a list).
Message = dict[str, Any]
# Tool schemas in the OpenAI function format, for chat templates that support tools.
Tools = Sequence[Mapping[str, Any]] | None
FinishReason = Literal["stop", "length", "cancelled", "deadline", "error"]


@dataclass(frozen=True)
class PromptInfo:
    """How the conversation was fitted into the context window."""

    prompt_tokens: int
    dropped_messages: int = 0
    question_chars: int = 0
    question_chars_kept: int = 0

    @property
    def question_cut(self) -> bool:
        return self.question_chars_kept < self.question_chars


@dataclass(frozen=True)
class Completion:
    text: str
    model_version: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prompt: PromptInfo
    finish_reason: FinishReason = "stop"
    # Seconds from submission to the first generated token; None when nothing was generated.
    time_to_first_token: float | None = None
    # The generated token ids, where the backend knows them (the local engine does).
    token_ids: tuple[int, ...] = ()
    # Tool calls a server parsed out of the reply itself (OpenAI's `tool_calls`), each
    # {"name": str, "arguments": dict}. Empty when the calls, if any, are written in `text`
    # in the chat template's own format (the local engine), which the agent reads from there.
    tool_calls: tuple[Mapping[str, Any], ...] = ()


class SwapError(RuntimeError):
    """New weights could not be loaded; the engine keeps serving the old ones."""


class TokenStream(Protocol):
    """One request in flight: iterate for text deltas as they are generated, then read `completion`.

    Iterating a second time continues the same stream (or yields nothing once it has finished).
    """

    def __iter__(self) -> Iterator[str]: ...

    def cancel(self) -> None: ...

    @property
    def completion(self) -> Completion:
        """Available once iteration has finished (raises RuntimeError before)."""
        ...


def drain(stream: TokenStream) -> Completion:
    """Run a stream to its end and return the whole answer (what `LLM.generate` does)."""
    for _ in stream:
        pass
    return stream.completion


class LLM(Protocol):
    @property
    def version(self) -> str:
        """The version new requests are served by."""
        ...

    @property
    def context_window(self) -> int | None:
        """Prompt plus answer tokens the model takes; None when the backend cannot tell."""
        ...

    @property
    def supports_tools(self) -> bool:
        """Whether `tools=` reaches the model (a chat template that shows them, or a server that takes them)."""
        ...

    def count_tokens(self, messages: Sequence[Message], *, tools: Tools = None) -> int:
        """The prompt tokens these messages take as this model sees them (an estimate where the backend
        has no tokenizer)."""
        ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> TokenStream:
        """Start answering; `tools` (OpenAI function schemas) are offered only where `supports_tools`."""
        ...

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> Completion: ...

    def swap(self, location: str, *, version: str) -> None:
        """Serve new requests from new weights; requests already running finish on the old ones."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests submitted and not yet finished (waiting plus generating)."""
        ...

    def close(self) -> None: ...
