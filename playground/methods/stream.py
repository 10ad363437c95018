"""chat.startStream / appendStream / stopStream, Slack's streaming replies.

The fake keeps the streamed text in an ordinary stored message so tests can
read it with `LocalSlack.messages`; which messages are still open is kept
in `Workspace.streaming`.
"""

from __future__ import annotations

from typing import Any

from ..workspace import Channel, Message, thread_key
from .base import CallContext, Handler, Response, SlackError, public


def start_stream(ctx: CallContext) -> Response:
    channel = ctx.channel()
    thread_ts = ctx.require("thread_ts")
    fields = {**ctx.bot_fields(), "text": _streamed_text(ctx)}
    message = ctx.workspace.post(channel.id, fields, thread_ts=thread_ts)
    ctx.workspace.streaming.add((channel.id, message["ts"]))
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def append_stream(ctx: CallContext) -> Response:
    channel, message = _open_stream(ctx)
    _append(ctx, channel, message)
    return {"ok": True, "channel": channel.id, "ts": message["ts"]}


def stop_stream(ctx: CallContext) -> Response:
    channel, message = _open_stream(ctx)
    _append(ctx, channel, message)
    extra = {k: ctx.arg(k) for k in ("blocks", "metadata") if ctx.arg(k) is not None}
    _, after = ctx.workspace.edit(channel.id, message["ts"], extra)
    ctx.workspace.streaming.discard((channel.id, message["ts"]))
    if message.get("thread_ts"):  # a status set while the answer streamed ends with it
        ctx.workspace.statuses.pop(thread_key(channel.id, message["thread_ts"]), None)
    return {"ok": True, "channel": channel.id, "ts": message["ts"], "message": public(after)}


def _open_stream(ctx: CallContext) -> tuple[Channel, Message]:
    channel = ctx.channel()
    message = ctx.message(channel)
    if (channel.id, message["ts"]) not in ctx.workspace.streaming:
        raise SlackError("message_not_in_streaming_state")
    return channel, message


def _append(ctx: CallContext, channel: Channel, message: Message) -> None:
    text = message.get("text", "") + _streamed_text(ctx)
    ctx.workspace.edit(channel.id, message["ts"], {"text": text})


def _streamed_text(ctx: CallContext) -> str:
    """markdown_text plus the text of markdown_text chunks (slack_sdk's ChatStream sends chunks)."""
    text = str(ctx.arg("markdown_text", ""))
    chunks: Any = ctx.arg("chunks", [])
    if not isinstance(chunks, list):
        raise SlackError("invalid_arguments", arg="chunks")
    for chunk in chunks:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            text += str(chunk.get("text", ""))
    return text


HANDLERS: dict[str, Handler] = {
    "chat.startStream": start_stream,
    "chat.appendStream": append_stream,
    "chat.stopStream": stop_stream,
}
