"""Reading tool calls out of a model's reply, and writing them back into the conversation.

Tool calls travel in the model's own chat template. The schemas go to the engine with the messages
(`stream(..., tools=...)`), the engine renders them with `apply_chat_template(messages, tools=...)`
(or sends them to an OpenAI-compatible server), and the model's reply is read in the format that
template teaches: Hermes/Qwen `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks,
or Llama 3.1's bare `{"name": ..., "parameters": {...}}`. A server that parses calls itself hands
them over on `Completion.tool_calls` instead. Each call goes back into the conversation as an
assistant message with `tool_calls` and one `tool` message per result, which is how HF chat
templates (Qwen2.5's, Llama 3.1's) expect to render them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ChatMessage = dict[str, Any]


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    # Why the call could not be read; it is answered with this error instead of being run.
    error: str | None = None


@dataclass(frozen=True)
class ParsedReply:
    content: str  # the text outside any tool call
    calls: list[ParsedCall]


def assistant_tool_message(content: str, calls: Sequence[tuple[str, ParsedCall]]) -> ChatMessage:
    """The model's tool-calling turn, in the OpenAI shape HF templates render.

    `arguments` stays a dict: Qwen2.5's template writes `arguments | tojson`, so a JSON string would
    come out quoted twice. (An OpenAI-compatible server wants a string there; its backend converts.)
    """
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call_id, call in calls
        ],
    }


# An unclosed block is still read: generation may stop at the length limit inside one.
_HERMES_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_tool_calls(text: str, *, known: Collection[str] = ()) -> ParsedReply:
    """The tool calls in a model's reply, and the text around them.

    Hermes/Qwen `<tool_call>` blocks are always calls. A reply that is nothing but a JSON object is
    read as a Llama 3.1 call only when it names a known tool, so an answer that happens to be JSON
    stays an answer.
    """
    if "<tool_call>" in text:
        calls = [_hermes_call(body) for body in _HERMES_CALL.findall(text)]
        content = _HERMES_CALL.sub("", text).replace("</tool_call>", "")
        return ParsedReply(content.strip(), calls)
    call = _bare_json_call(text, known)
    if call is not None:
        return ParsedReply("", [call])
    return ParsedReply(text.strip(), [])


def _hermes_call(body: str) -> ParsedCall:
    try:
        data = json.loads(body.strip())
    except json.JSONDecodeError:
        found = _NAME.search(body)
        return ParsedCall(found.group(1) if found else "", {}, error="the tool call is not valid JSON")
    return _call_from(data) or ParsedCall("", {}, error='a tool call needs {"name": ..., "arguments": {...}}')


def _bare_json_call(text: str, known: Collection[str]) -> ParsedCall | None:
    body = text.strip().removeprefix("<|python_tag|>").strip()
    fenced = _FENCE.match(body)
    body = fenced.group(1) if fenced else body
    if not (body.startswith("{") and body.endswith("}")):
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not ({"parameters", "arguments"} & data.keys()):
        return None
    call = _call_from(data)
    return call if call is not None and call.name in known else None


def _call_from(data: Any) -> ParsedCall | None:
    if isinstance(data, dict) and isinstance(data.get("function"), dict):
        data = data["function"]  # the OpenAI shape, which some fine-tunes write
    if not isinstance(data, dict):
        return None
    name = data.get("name")
    arguments = data.get("arguments", data.get("parameters")) or {}
    if isinstance(arguments, str):  # arguments given as a JSON string, OpenAI style
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return ParsedCall(str(name or ""), {}, error="the tool call's arguments are not valid JSON")
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    return ParsedCall(name, arguments)


def server_calls(calls: Sequence[Mapping[str, Any]]) -> list[ParsedCall]:
    """Calls a server parsed itself (`Completion.tool_calls`), read like ones written in the text."""
    parsed = []
    for data in calls:
        call = _call_from(dict(data))
        parsed.append(
            call or ParsedCall(str(data.get("name") or ""), {}, error="a tool call needs a name and arguments")
        )
    return parsed


_HERMES_OPEN = "<tool_call>"
# How a reply that is one bare JSON call may open (Llama 3.1, or a fenced block some fine-tunes write).
_BARE_OPENINGS = ("{", "<|python_tag|>", "```")


class TextGate:
    """Lets a reply's text through as it streams, but never a tool call.

    A reply that opens like a call (a `<tool_call>` tag, or bare JSON) is held until it ends, and is
    let through then only if it was not one; a reply that opens as prose streams until a `<tool_call>`
    tag appears in it (the tag's first characters are held back until they are known not to be one).
    """

    def __init__(self, *, known: Collection[str]) -> None:
        self._known = known
        self._text = ""
        self._sent = 0
        self._mode = "undecided"  # then "text" or "call"

    def feed(self, delta: str) -> str:
        """The part of the reply so far that is safe to show now."""
        self._text += delta
        if self._mode == "undecided":
            opening = self._text.lstrip()
            if not opening or _may_open_call(opening):
                if opening.startswith(_HERMES_OPEN):
                    self._mode = "call"
                return ""
            self._mode = "text"
        if self._mode == "call":
            return ""
        at = self._text.find(_HERMES_OPEN, self._sent)
        if at >= 0:
            self._mode = "call"
            return self._take(at)
        return self._take(len(self._text) - _held_back(self._text))

    def finish(self, *, server_calls: bool = False) -> str:
        """What is left to show once the reply is complete: nothing if it was a call."""
        if self._mode == "call" or server_calls:
            return ""
        if self._mode == "undecided" and parse_tool_calls(self._text, known=self._known).calls:
            return ""
        return self._take(len(self._text))

    def _take(self, upto: int) -> str:
        shown, self._sent = self._text[self._sent : upto], max(self._sent, upto)
        return shown


def _may_open_call(opening: str) -> bool:
    return opening.startswith(_BARE_OPENINGS) or any(
        marker.startswith(opening) or opening.startswith(marker) for marker in (_HERMES_OPEN, "<|python_tag|>")
    )


def _held_back(text: str) -> int:
    """How many trailing characters might be the start of a `<tool_call>` tag."""
    for size in range(min(len(_HERMES_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(_HERMES_OPEN[:size]):
            return size
    return 0
