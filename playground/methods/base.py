"""What every Web API handler gets, and how it reports Slack errors."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..workspace import Channel, Message, Workspace

Response = dict[str, Any]


class SlackError(Exception):
    """Raised by a handler to answer ``{"ok": false, "error": ...}``.

    The Web API reports errors with HTTP 200; only endpoints outside it (such
    as response_url) need another `status`.
    """

    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra

    def body(self) -> Response:
        return {"ok": False, "error": self.error, **self.extra}


@dataclass(frozen=True)
class CallContext:
    """One authenticated call: parsed arguments plus the workspace to act on."""

    workspace: Workspace
    args: dict[str, Any]
    actor: str  # user id that owns the token
    base_url: str

    def arg(self, name: str, default: Any = None) -> Any:
        """An optional argument; empty strings count as absent, like Slack."""
        value = self.args.get(name)
        return default if value in (None, "") else value

    def require(self, name: str, error: str = "invalid_arguments") -> Any:
        value = self.arg(name)
        if value is None:
            raise SlackError(error, arg=name)
        return value

    def flag(self, name: str) -> bool:
        """Booleans arrive as true/false in JSON and "1"/"true" in forms."""
        return self.arg(name) in (True, 1, "1", "true", "True")

    def int_arg(self, name: str, default: int) -> int:
        try:
            return int(self.arg(name, default))
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments", arg=name) from None

    def channel(self, name: str = "channel") -> Channel:
        """Resolve a channel argument or fail the way Slack does."""
        channel = self.workspace.channel(self.arg(name))
        if channel is None:
            raise SlackError("channel_not_found")
        return channel

    def member_channel(self, name: str = "channel") -> Channel:
        """A channel the caller must be in to read or post: Slack answers not_in_channel
        for a public one and hides any other from non-members."""
        channel = self.channel(name)
        if self.actor not in channel.members:
            raise SlackError("not_in_channel" if channel.kind == "public" else "channel_not_found")
        return channel

    def visible_channel(self, name: str = "channel") -> Channel:
        """A channel the caller can look at: any public one, any other only as a member."""
        channel = self.channel(name)
        if not channel.visible_to(self.actor):
            raise SlackError("channel_not_found")
        return channel

    def message(self, channel: Channel, name: str = "ts") -> Message:
        message = self.workspace.find(channel.id, self.require(name))
        if message is None:
            raise SlackError("message_not_found")
        return message

    def bot_fields(self) -> Message:
        """Author fields of a message posted with the caller's token."""
        if self.actor != self.workspace.bot_user_id:
            return {"user": self.actor}
        return self.workspace.bot_author()


Handler = Callable[[CallContext], Response]


def public(message: Message) -> Message:
    """A detached copy, so responses never alias the live workspace."""
    return copy.deepcopy(message)


def content_fields(ctx: CallContext) -> Message:
    """text/blocks/attachments/metadata as given; Slack stores only what was sent."""
    fields: Message = {}
    for name in ("text", "blocks", "attachments", "metadata"):
        if ctx.arg(name) is not None:
            fields[name] = ctx.arg(name)
    return fields


def require_content(ctx: CallContext) -> Message:
    fields = content_fields(ctx)
    if not any(k in fields for k in ("text", "blocks", "attachments")):
        raise SlackError("no_text")
    fields.setdefault("text", "")
    return fields


def paginate(ctx: CallContext, items: Sequence[Any], default_limit: int, key: str = "messages") -> Response:
    """Slack's cursor pagination over an already ordered list, answered under `key`
    ("messages", "channels" or "members"). Only message listings say has_more;
    the others end when next_cursor comes back empty."""
    limit = max(1, ctx.int_arg("limit", default_limit))
    start = _decode_cursor(ctx.arg("cursor"))
    page = items[start : start + limit]
    has_more = start + limit < len(items)
    cursor = _encode_cursor(start + limit) if has_more else ""
    response: Response = {key: [copy.deepcopy(item) for item in page]}
    if key == "messages":
        response["has_more"] = has_more
    response["response_metadata"] = {"next_cursor": cursor}
    return response


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = int(base64.b64decode(cursor).decode().removeprefix("offset:"))
    except ValueError:
        raise SlackError("invalid_cursor") from None
    if offset < 0:
        raise SlackError("invalid_cursor")
    return offset
