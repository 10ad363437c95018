"""chat.* methods for ordinary messages."""

from __future__ import annotations

from ..workspace import Message
from .base import CallContext, Handler, Response, SlackError, content_fields, public, require_content


def post_message(ctx: CallContext) -> Response:
    # Without chat:write.public (Ember's manifest lacks it) a bot posts only where it is a member.
    channel = ctx.member_channel()
    if channel.archived:
        raise SlackError("is_archived")
    fields = {**ctx.bot_fields(), **require_content(ctx)}
    if ctx.flag("reply_broadcast"):
        fields["reply_broadcast"] = True
    message = ctx.workspace.post(channel.id, fields, thread_ts=ctx.arg("thread_ts"))
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": public(message)}


def update(ctx: CallContext) -> Response:
    channel = ctx.channel()
    message = ctx.message(channel)
    _check_author(ctx, message, "cant_update_message")
    changes = content_fields(ctx)
    if not changes:
        raise SlackError("no_text")
    changes["edited"] = {"user": ctx.actor, "ts": ctx.workspace.clock.next()}
    _, after = ctx.workspace.edit(channel.id, message["ts"], changes)
    return {"ok": True, "channel": channel.id, "ts": after["ts"], "text": after.get("text", ""), "message": after}


def delete(ctx: CallContext) -> Response:
    channel = ctx.channel()
    message = ctx.message(channel)
    _check_author(ctx, message, "cant_delete_message")
    ctx.workspace.delete(channel.id, message["ts"])
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def post_ephemeral(ctx: CallContext) -> Response:
    channel = ctx.channel()
    user = ctx.require("user", "user_not_found")
    if user not in ctx.workspace.users:
        raise SlackError("user_not_found")
    content = require_content(ctx)
    ts = ctx.workspace.clock.next()
    thread_ts = ctx.arg("thread_ts")
    ephemeral = {"channel": channel.id, "user": user, "ts": ts, "thread_ts": thread_ts, "via": "chat.postEphemeral"}
    ctx.workspace.ephemerals.append({**ephemeral, **content})
    return {"ok": True, "message_ts": ts}


def get_permalink(ctx: CallContext) -> Response:
    channel = ctx.channel()
    message = ctx.message(channel, "message_ts")
    base_url = (ctx.workspace.web_url or ctx.base_url).rstrip("/")
    return {"ok": True, "channel": channel.id, "permalink": permalink(base_url, channel.id, message)}


def permalink(base_url: str, channel: str, message: Message) -> str:
    """The message's permalink, as chat.getPermalink answers it."""
    link = f"{base_url}/archives/{channel}/p{message['ts'].replace('.', '')}"
    thread_ts = message.get("thread_ts")
    if thread_ts and thread_ts != message["ts"]:
        # Slack's reply permalinks carry the thread so clients open it.
        link += f"?thread_ts={thread_ts}&cid={channel}"
    return link


def _check_author(ctx: CallContext, message: Message, error: str) -> None:
    # A bot token may only edit or delete messages the bot posted.
    if message.get("user") != ctx.actor:
        raise SlackError(error)


HANDLERS: dict[str, Handler] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
}
