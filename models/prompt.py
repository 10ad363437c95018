"""Fitting a conversation into the model's context window.

The system prompt and the newest messages matter most: older turns are dropped first, and only if
the question alone is still too long is the question itself cut (and the caller told by how much).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Content is text; an assistant message that called tools also carries `tool_calls` (a list).
Message = dict[str, Any]
Tools = Sequence[Mapping[str, Any]] | None


# The estimate used when no tokenizer is given: generous for English, short for code or CJK text.
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators around each message
PROMPT_OVERHEAD_TOKENS = 3  # the assistant turn's opening


class PromptTooLong(Exception):
    """Even an empty question does not fit: the context budget is smaller than the system prompt."""


@dataclass(frozen=True)
class FittedPrompt:
    input_ids: list[int]
    dropped_messages: int
    question_chars: int
    question_chars_kept: int

    @property
    def question_cut(self) -> bool:
        return self.question_chars_kept < self.question_chars


def render(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], *, tools: Tools = None) -> list[int]:
    ids: Any = tokenizer.apply_chat_template(
        list(messages),
        tools=[dict(tool) for tool in tools] if tools else None,
        add_generation_prompt=True,
        tokenize=True,
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def fit(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], budget: int, *, tools: Tools = None
) -> FittedPrompt:
    """Return token ids for `messages` in at most `budget` tokens.

    `messages` is [system?] + history + [question]; the last message is the one being answered.
    """
    system = [m for m in messages[:1] if m["role"] == "system"]
    history = list(messages[len(system) : -1])
    question = messages[-1]
    dropped = 0
    while True:
        ids = render(tokenizer, [*system, *history, question], tools=tools)
        if len(ids) <= budget:
            return FittedPrompt(ids, dropped, len(question["content"]), len(question["content"]))
        if not history:
            break
        history.pop(0)
        dropped += 1
    return _cut_question(tokenizer, system, question, budget, dropped, tools)


def _cut_question(
    tokenizer: PreTrainedTokenizerBase,
    system: list[Message],
    question: Message,
    budget: int,
    dropped: int,
    tools: Tools,
) -> FittedPrompt:
    overhead = len(render(tokenizer, [*system, {"role": question["role"], "content": ""}], tools=tools))
    room = budget - overhead
    if room <= 0:
        raise PromptTooLong(f"the system prompt alone takes {overhead} of {budget} tokens")
    content = question["content"]
    tokens = tokenizer.encode(content, add_special_tokens=False)
    # Decoding then re-encoding can shift a token boundary, so shrink until the rendering fits.
    while room > 0:
        kept = str(tokenizer.decode(tokens[:room], skip_special_tokens=True))
        ids = render(tokenizer, [*system, {"role": question["role"], "content": kept}], tools=tools)
        if len(ids) <= budget:
            return FittedPrompt(ids, dropped, len(content), len(kept))
        room -= max(1, len(ids) - budget)
    raise PromptTooLong(f"no part of the question fits in {budget} tokens")


_PROBE_NAME = "ember_probe_tool"
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": _PROBE_NAME,
        "description": "Checks whether the chat template shows tools.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def template_supports_tools(tokenizer: PreTrainedTokenizerBase | None) -> bool:
    """Whether the chat template shows tools: render one and look for its name.

    Asking the template itself beats looking for words in its text: a template that mentions
    "tools" may still drop them, and one that shows them may call them something else.
    """
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return False
    try:
        rendered: Any = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}], tools=[_PROBE_TOOL], add_generation_prompt=True, tokenize=False
        )
    except Exception:
        # Templates raise what they like (jinja errors, raise_exception(...)): any failure means no tools.
        log.debug("chat template cannot render tools", exc_info=True)
        return False
    return isinstance(rendered, str) and _PROBE_NAME in rendered


class EstimatingTokenizer:
    """Stands in for a tokenizer where a backend has none (an OpenAI-compatible server's model): counts by
    characters, so fitting and counting work alike with or without the real one."""

    def apply_chat_template(self, messages: Sequence[Message], *, tools: Tools = None, **_: Any) -> list[int]:
        schemas = [{"content": json.dumps([dict(t) for t in tools], default=str)}] if tools else []
        return [0] * (PROMPT_OVERHEAD_TOKENS + sum(map(_cost, [*messages, *schemas])))

    def encode(self, text: str, **_: Any) -> list[str]:  # the "tokens" are slices of the text
        return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]

    def decode(self, tokens: Sequence[str], **_: Any) -> str:
        return "".join(tokens)


def _cost(message: Message) -> int:
    """A message's tokens by the estimate, the tool calls it made included."""
    text = str(message.get("content") or "") + (json.dumps(message["tool_calls"]) if message.get("tool_calls") else "")
    return MESSAGE_OVERHEAD_TOKENS + math.ceil(len(text) / CHARS_PER_TOKEN)
