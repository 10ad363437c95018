"""conversations.* methods, and users.conversations (the same channel objects, listed per member)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..workspace import ChannelKind, Message, ts_key
from .base import CallContext, Handler, Response, SlackError, paginate

# Slack's documented default page sizes.
_HISTORY_LIMIT = 100
_REPLIES_LIMIT = 1000
_MEMBERS_LIMIT = 100
_CONVERSATIONS_LIMIT = 100
# The `types` of users.conversations and the channel kinds they select.
_TYPES: dict[str, ChannelKind] = {"public_channel": "public", "private_channel": "private", "mpim": "mpim", "im": "im"}


def history(ctx: CallContext) -> Response:
    channel = ctx.member_channel()
    inside = _window(ctx)
    window = [m for m in ctx.workspace.top_level(channel.id) if inside(m)]
    window.reverse()  # Slack returns history newest first
    return {"ok": True, **paginate(ctx, window, _HISTORY_LIMIT)}


def replies(ctx: CallContext) -> Response:
    channel = ctx.member_channel()
    ts = ctx.require("ts")
    if ctx.workspace.find(channel.id, ts) is None:
        raise SlackError("thread_not_found")
    thread = ctx.workspace.thread(channel.id, ts)
    # The parent always leads the page, as on Slack; the window applies to replies.
    inside = _window(ctx)
    parent, rest = thread[:1], [m for m in thread[1:] if inside(m)]
    return {"ok": True, **paginate(ctx, parent + rest, _REPLIES_LIMIT)}


def info(ctx: CallContext) -> Response:
    return {"ok": True, "channel": ctx.visible_channel().info(ctx.actor)}


def members(ctx: CallContext) -> Response:
    """Member ids in a stable order; Slack lets anyone list a public channel's members."""
    channel = ctx.visible_channel()
    return {"ok": True, **paginate(ctx, sorted(channel.members), _MEMBERS_LIMIT, key="members")}


def open_conversation(ctx: CallContext) -> Response:
    """Find or create the IM with one user (multi-user mpims are not modelled yet)."""
    user = ctx.require("users", "users_list_not_supplied")
    if user not in ctx.workspace.users:
        raise SlackError("user_not_found")
    ws = ctx.workspace
    existing = ws.dm_of(user)
    channel = existing or ws.add_channel(user, kind="im", user=user)
    return {"ok": True, "channel": {"id": channel.id}, "already_open": existing is not None}


def users_conversations(ctx: CallContext) -> Response:
    """The conversations `user` (default: the caller) is in, as far as the caller's token can see:
    another member's private conversations show only where the caller is a member too."""
    ws = ctx.workspace
    user = ctx.arg("user", ctx.actor)
    if user not in ws.users:
        raise SlackError("user_not_found")
    kinds = _kinds(ctx.arg("types", "public_channel"))
    skip_archived = ctx.flag("exclude_archived")
    found = [
        c.info(ctx.actor)
        for c in ws.channels.values()
        if c.kind in kinds and user in c.members and c.visible_to(ctx.actor) and not (skip_archived and c.archived)
    ]
    return {"ok": True, **paginate(ctx, found, _CONVERSATIONS_LIMIT, key="channels")}


def _kinds(types: Any) -> set[ChannelKind]:
    """slack_sdk joins a list of types with commas; a JSON caller may still send a list."""
    names = types if isinstance(types, list) else str(types).split(",")
    kinds: set[ChannelKind] = set()
    for name in (str(n).strip() for n in names):
        if name not in _TYPES:
            raise SlackError("invalid_types")
        kinds.add(_TYPES[name])
    return kinds


def _window(ctx: CallContext) -> Callable[[Message], bool]:
    """oldest/latest bounds, exclusive unless inclusive=true, like Slack."""
    low, high = _bound(ctx, "oldest"), _bound(ctx, "latest")
    inclusive = ctx.flag("inclusive")

    def inside(message: Message) -> bool:
        key = ts_key(message["ts"])
        if inclusive:
            return (low is None or key >= low) and (high is None or key <= high)
        return (low is None or key > low) and (high is None or key < high)

    return inside


def _bound(ctx: CallContext, name: str) -> int | None:
    value = ctx.arg(name)
    if value is None:
        return None
    try:
        return ts_key(value)
    except ValueError:
        raise SlackError(f"invalid_ts_{name}") from None


HANDLERS: dict[str, Handler] = {
    "conversations.history": history,
    "conversations.replies": replies,
    "conversations.info": info,
    "conversations.members": members,
    "conversations.open": open_conversation,
    "users.conversations": users_conversations,
}
