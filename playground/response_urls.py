"""The response_url endpoint that slash commands and interactions hand out."""

from __future__ import annotations

from typing import Any

from .methods import Response, SlackError
from .workspace import Message, ResponseUrl, Workspace

RESPONSE_PATH = "/response/"


def mint(ws: Workspace, base_url: str, channel: str, user: str | None = None, ephemeral_ts: str | None = None) -> str:
    """Create a response_url bound to `channel` (and the invoking user); `ephemeral_ts` is the ephemeral
    message clicked on, which replace_original and delete_original then act on."""
    with ws.lock:
        response_id = ws.new_id("R")
        ws.response_urls[response_id] = ResponseUrl(channel=channel, user=user, ephemeral_ts=ephemeral_ts)
    return f"{base_url}{RESPONSE_PATH}{response_id}"


def handle(ws: Workspace, response_id: str, body: dict[str, Any]) -> Response:
    """Apply one POST to a response_url, the way Slack renders it."""
    with ws.lock:
        target = ws.response_urls.get(response_id)
        if target is None:
            raise SlackError("expired_url", status=404)
        if _truthy(body.get("delete_original")):
            _delete_original(ws, target)
            return {"ok": True}
        content = _content(body)
        if body.get("response_type") == "in_channel":
            _show_in_channel(ws, target, body, content)
        else:
            # Slack's default response_type is ephemeral: only the invoker sees it.
            _show_ephemeral(ws, target, body, content)
        return {"ok": True}


def _content(body: dict[str, Any]) -> Message:
    content = {k: body[k] for k in ("text", "blocks", "attachments") if body.get(k)}
    if not content:
        raise SlackError("no_text")
    content.setdefault("text", "")
    return content


def _show_in_channel(ws: Workspace, target: ResponseUrl, body: dict[str, Any], content: Message) -> None:
    # replace_original rewrites the message this response_url produced before.
    ts = target.message_ts
    if _truthy(body.get("replace_original")) and ts and ws.find(target.channel, ts):
        ws.edit(target.channel, ts, content)
        return
    message = ws.post(target.channel, {**ws.bot_author(), **content}, thread_ts=body.get("thread_ts"))
    target.message_ts = message["ts"]


def _show_ephemeral(ws: Workspace, target: ResponseUrl, body: dict[str, Any], content: Message) -> None:
    original = _original_ephemeral(ws, target)
    if original is not None and _truthy(body.get("replace_original")):
        # Slack swaps the clicked ephemeral's content in place.
        for key in ("text", "blocks", "attachments"):
            original.pop(key, None)
        original.update(content, replace_original=True)
        return
    ws.ephemerals.append(
        {
            "channel": target.channel,
            "user": target.user,
            "ts": ws.clock.next(),
            "thread_ts": body.get("thread_ts"),
            "via": "response_url",
            "replace_original": _truthy(body.get("replace_original")),
            **content,
        }
    )


def _original_ephemeral(ws: Workspace, target: ResponseUrl) -> Message | None:
    if target.ephemeral_ts is None:
        return None
    return next(
        (e for e in ws.ephemerals if e["ts"] == target.ephemeral_ts and e["channel"] == target.channel),
        None,
    )


def _delete_original(ws: Workspace, target: ResponseUrl) -> None:
    original = _original_ephemeral(ws, target)
    if original is not None:
        ws.ephemerals.remove(original)
        target.ephemeral_ts = None
        return
    if target.message_ts and ws.find(target.channel, target.message_ts):
        ws.delete(target.channel, target.message_ts)
    target.message_ts = None


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")
