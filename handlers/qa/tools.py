"""The agent's tools: plain functions over injected readers, so no Slack object ever reaches them.

Every tool answers with a short string, refusals and failures included: an exception would end the
whole answer, while an error the model can read lets it try something else or say what it could
not do. What the asker may see is decided by db.visibility, like every other reader of stored talk.
Results are redacted with the rest of the prompt, where the agent assembles it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from db.visibility import Audience, can_see
from handlers.qa.types import ChannelType, ReadHistory, ReadThread, ThreadMessage

log = logging.getLogger(__name__)

# A tool result goes back into the prompt; a small model's window fills fast.
MAX_RESULT_CHARS = 2_000
MAX_ITEM_CHARS = 400
DEFAULT_CHANNEL_MESSAGES = 20
MAX_CHANNEL_MESSAGES = 50
CUT_MARK = " …(cut)"

_CHANNEL_ID = re.compile(r"^#?([CGD][A-Z0-9]{2,})$")
_CHANNEL_MENTION = re.compile(r"^<#([CGD][A-Z0-9]{2,})(?:\|[^>]*)?>$")


class ToolError(Exception):
    """A failure the model should read as the tool's result (its message is shown as is)."""


class MemoryHitLike(Protocol):
    """What db.search.search_memories returns (MemoryHit); read-only so frozen dataclasses fit."""

    @property
    def memory_id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def question(self) -> str | None: ...

    @property
    def channel_id(self) -> str: ...

    @property
    def source_ts(self) -> str | None: ...

    @property
    def score(self) -> float: ...


# Already bound to the asker's Audience by whoever builds the toolbox.
SearchMemories = Callable[[str], Sequence[MemoryHitLike]]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Tool:
    """One tool: its JSON schema (what the model reads) and the function that runs it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    run: Callable[..., str]

    @property
    def schema(self) -> dict[str, Any]:
        """OpenAI function format, as `apply_chat_template(tools=...)` and /v1/chat/completions take it."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


class ToolBox:
    """The tools offered for one question, already bound to where it was asked."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema for tool in self._tools.values()]

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """Run a tool the model asked for; every outcome, failure included, is a short string."""
        tool = self._tools.get(name)
        if tool is None:
            return tool_error(f"there is no tool named {name!r}; the tools are: {', '.join(self._tools)}")
        try:
            kwargs = _checked_arguments(tool, arguments)
            return truncate(tool.run(**kwargs))
        except ToolError as exc:
            return tool_error(str(exc))
        except Exception:
            # A reader failed (Slack down, database locked): the answer goes on without this tool.
            log.exception("tool %s failed", name)
            return tool_error(f"{name} failed; try something else or answer without it")


def tool_error(message: str) -> str:
    return truncate(f"error: {message}")


def truncate(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - len(CUT_MARK)] + CUT_MARK


def _checked_arguments(tool: Tool, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Only the declared parameters, of the declared types (models send "10" for 10 often enough)."""
    properties: Mapping[str, Any] = tool.parameters.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ToolError(f"{tool.name} takes no argument {', '.join(unknown)}")
    missing = [name for name in tool.parameters.get("required", []) if name not in arguments]
    if missing:
        raise ToolError(f"{tool.name} needs {', '.join(missing)}")
    return {name: _coerce(tool.name, name, value, properties[name].get("type")) for name, value in arguments.items()}


def _coerce(tool: str, name: str, value: Any, kind: str | None) -> Any:
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ToolError(f"{tool}: {name} must be a whole number")
        try:
            return int(value)
        except ValueError:
            raise ToolError(f"{tool}: {name} must be a whole number") from None
    if kind == "string" and not isinstance(value, str):
        raise ToolError(f"{tool}: {name} must be a string")
    return value


# -- the tools ------------------------------------------------------------------------------------


def search_memory(query: str, *, search: SearchMemories) -> str:
    query = query.strip()
    if not query:
        raise ToolError("search_memory needs a non-empty query")
    hits = search(query)
    if not hits:
        return f"No memories match {query!r}."
    return "\n".join(format_hit(hit) for hit in hits)


def read_thread(*, read: ReadThread) -> str:
    messages = read()
    if not messages:
        return "This conversation has no earlier messages."
    return _format_messages(messages)


def read_channel(
    channel: str,
    limit: int = DEFAULT_CHANNEL_MESSAGES,
    *,
    audience: Audience,
    channel_type: ChannelType,
    history: ReadHistory,
) -> str:
    channel_id = parse_channel(channel)
    if channel_id is None:
        return tool_error(f"{channel!r} is not a channel ID; give one like C0123ABCD or a link like <#C0123ABCD>")
    if not may_read_channel(audience, channel_id, channel_type):
        # The same words whether the channel is private or does not exist: a refusal must not tell which.
        return tool_error(
            f"<#{channel_id}> cannot be read from here: only this conversation and public channels "
            "of this workspace can"
        )
    messages = history(channel_id, max(1, min(limit, MAX_CHANNEL_MESSAGES)))
    if not messages:
        return f"<#{channel_id}> has no recent messages."
    return f"Recent messages in <#{channel_id}>:\n" + _format_messages(messages)


def current_time(*, clock: Clock) -> str:
    now = clock()
    if now.tzinfo is None:  # a naive clock is taken as UTC, so the answer always says its zone
        now = now.replace(tzinfo=UTC)
    return f"{now.isoformat(timespec='seconds')} ({now:%A})"


def may_read_channel(audience: Audience, channel_id: str, channel_type: ChannelType) -> bool:
    """The asker's own conversation, or a public channel of the asker's workspace (db.visibility's rule)."""
    if channel_id == audience.channel_id:
        return True
    try:
        kind = channel_type(channel_id)
    except Exception:
        log.warning("could not look up channel %s; refusing to read it", channel_id, exc_info=True)
        return False
    # The lookup only knows the asker's workspace, so a channel it can place is placed there.
    return can_see(audience, _PlacedChannel(audience.workspace_id, channel_id, kind))


@dataclass
class _PlacedChannel:
    workspace_id: str
    channel_id: str
    channel_type: str


def parse_channel(channel: str) -> str | None:
    """A channel ID from what a model writes: C0123, #C0123, or Slack's <#C0123|name> link."""
    text = channel.strip()
    match = _CHANNEL_MENTION.match(text) or _CHANNEL_ID.match(text)
    return match.group(1) if match else None


def source_marker(hit: MemoryHitLike) -> str:
    """How an answer cites a memory; the caller maps it back to the hit (channel_id, source_ts)."""
    return f"[m{hit.memory_id}]"


def format_hit(hit: MemoryHitLike) -> str:
    answering = f" (answering: {_clip(hit.question)})" if hit.question else ""
    return f"{source_marker(hit)} {hit.kind} from <#{hit.channel_id}>{answering}: {_clip(hit.text)}"


def _format_messages(messages: Sequence[ThreadMessage]) -> str:
    """Oldest first; when they do not all fit, the newest are the ones kept."""
    lines = [_format_message(m) for m in sorted(messages, key=lambda m: _ts(m.ts))]
    kept: list[str] = []
    room = MAX_RESULT_CHARS - 40  # leaves space for the "left out" note
    for line in reversed(lines):
        room -= len(line) + 1
        if room < 0:
            break
        kept.append(line)
    left_out = len(lines) - len(kept)
    note = [f"({left_out} earlier messages left out)"] if left_out else []
    return "\n".join([*note, *reversed(kept)])


def _format_message(message: ThreadMessage) -> str:
    who = "Ember" if message.from_ember else f"<@{message.user_id}>" if message.user_id else "someone"
    return f"[{_when(message.ts)}] {who}: {_clip(message.text)}"


def _clip(text: str) -> str:
    return truncate(" ".join(text.split()), MAX_ITEM_CHARS)


def _ts(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0


def _when(ts: str) -> str:
    seconds = _ts(ts)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC") if seconds else ts


def _local_now() -> datetime:
    return datetime.now().astimezone()


# -- schemas and assembly ---------------------------------------------------------------------------

SEARCH_MEMORY = {
    "name": "search_memory",
    "description": (
        "Search what Ember remembers from earlier conversations (facts, corrections, good answers). "
        "Results start with a marker like [m12]; cite it when you use a result."
    ),
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look for, in a few words."}},
        "required": ["query"],
    },
}
READ_THREAD = {
    "name": "read_thread",
    "description": "Read the earlier messages of the current Slack thread or conversation.",
    "parameters": {"type": "object", "properties": {}},
}
READ_CHANNEL = {
    "name": "read_channel",
    "description": (
        "Read the recent messages of a Slack channel: the current one, or a public channel of this "
        "workspace. Pass the channel ID (C0123ABCD) or its link (<#C0123ABCD>)."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "channel": {"type": "string", "description": "The channel ID or <#ID> link."},
            "limit": {
                "type": "integer",
                "description": (
                    f"How many recent messages (1-{MAX_CHANNEL_MESSAGES}, default {DEFAULT_CHANNEL_MESSAGES})."
                ),
            },
        },
        "required": ["channel"],
    },
}
CURRENT_TIME = {
    "name": "current_time",
    "description": "The current date and time, with its time zone.",
    "parameters": {"type": "object", "properties": {}},
}


def _tool(spec: Mapping[str, Any], run: Callable[..., str]) -> Tool:
    return Tool(name=spec["name"], description=spec["description"], parameters=spec["parameters"], run=run)


def build_toolbox(
    *,
    audience: Audience,
    search: SearchMemories | None = None,
    thread: ReadThread | None = None,
    history: ReadHistory | None = None,
    channel_type: ChannelType | None = None,
    clock: Clock = _local_now,
) -> ToolBox:
    """The tools for one question. A reader left out leaves its tool out (`ember chat` has no Slack)."""
    tools = [_tool(CURRENT_TIME, functools.partial(current_time, clock=clock))]
    if search is not None:
        tools.append(_tool(SEARCH_MEMORY, functools.partial(search_memory, search=search)))
    if thread is not None:
        tools.append(_tool(READ_THREAD, functools.partial(read_thread, read=thread)))
    if history is not None and channel_type is not None:
        reader = functools.partial(read_channel, audience=audience, channel_type=channel_type, history=history)
        tools.append(_tool(READ_CHANNEL, reader))
    return ToolBox(tools)
