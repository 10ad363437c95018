"""conversations.* methods."""

from __future__ import annotations

from ..workspace import Message, ts_key
from .base import CallContext, Handler, Response, SlackError, paginate

# Slack's documented default page sizes.
_HISTORY_LIMIT = 100
_REPLIES_LIMIT = 1000


def history(ctx: CallContext) -> Response:
    channel = ctx.channel()
    window = [m for m in ctx.workspace.top_level(channel.id) if _in_window(ctx, m)]
    window.reverse()  # Slack returns history newest first
    return {"ok": True, **paginate(ctx, window, _HISTORY_LIMIT)}


def replies(ctx: CallContext) -> Response:
    channel = ctx.channel()
    ts = ctx.require("ts")
    if ctx.workspace.find(channel.id, ts) is None:
        raise SlackError("thread_not_found")
    thread = ctx.workspace.thread(channel.id, ts)
    # The parent always leads the page, as on Slack; the window applies to replies.
    parent, rest = thread[:1], [m for m in thread[1:] if _in_window(ctx, m)]
    return {"ok": True, **paginate(ctx, parent + rest, _REPLIES_LIMIT)}


def info(ctx: CallContext) -> Response:
    return {"ok": True, "channel": ctx.channel().info()}


def open_conversation(ctx: CallContext) -> Response:
    """Find or create the IM with one user (multi-user mpims are not modelled yet)."""
    user = ctx.require("users", "users_list_not_supplied")
    if user not in ctx.workspace.users:
        raise SlackError("user_not_found")
    ws = ctx.workspace
    existing = next((c for c in ws.channels.values() if c.kind == "im" and c.user == user), None)
    channel = existing or ws.add_channel(user, kind="im", user=user)
    return {"ok": True, "channel": {"id": channel.id}, "already_open": existing is not None}


def _in_window(ctx: CallContext, message: Message) -> bool:
    """oldest/latest bounds, exclusive unless inclusive=true, like Slack."""
    key = ts_key(message["ts"])
    oldest, latest = ctx.arg("oldest"), ctx.arg("latest")
    if ctx.flag("inclusive"):
        return (oldest is None or key >= ts_key(oldest)) and (latest is None or key <= ts_key(latest))
    return (oldest is None or key > ts_key(oldest)) and (latest is None or key < ts_key(latest))


HANDLERS: dict[str, Handler] = {
    "conversations.history": history,
    "conversations.replies": replies,
    "conversations.info": info,
    "conversations.open": open_conversation,
}
