"""auth, users, reactions and assistant.threads methods."""

from __future__ import annotations

from typing import Any

from ..workspace import Message, thread_key
from .base import CallContext, Handler, Response, SlackError


def auth_test(ctx: CallContext) -> Response:
    ws = ctx.workspace
    user = ws.users[ctx.actor]
    response: Response = {
        "ok": True,
        "url": f"{(ws.web_url or ctx.base_url).rstrip('/')}/",
        "team": ws.team_name,
        "user": user.name,
        "team_id": ws.team_id,
        "user_id": user.id,
        "is_enterprise_install": False,
    }
    if user.bot_id:
        response["bot_id"] = user.bot_id
    return response


def users_info(ctx: CallContext) -> Response:
    user = ctx.workspace.users.get(ctx.require("user", "user_not_found"))
    if user is None:
        raise SlackError("user_not_found")
    return {"ok": True, "user": user.info(ctx.workspace.team_id)}


def reactions_add(ctx: CallContext) -> Response:
    message = ctx.message(ctx.channel(), "timestamp")
    if not ctx.workspace.add_reaction(message, ctx.actor, ctx.require("name", "invalid_name")):
        raise SlackError("already_reacted")
    return {"ok": True}


def reactions_remove(ctx: CallContext) -> Response:
    message = ctx.message(ctx.channel(), "timestamp")
    if not remove_reaction(message, ctx.actor, ctx.require("name", "invalid_name")):
        raise SlackError("no_reaction")
    return {"ok": True}


def remove_reaction(message: Message, user: str, name: str) -> bool:
    """Take `user`'s reaction :name: off a stored (live) message; False if they had not added it.
    The caller holds the workspace lock."""
    reactions: list[dict[str, Any]] = message.get("reactions") or []
    name = name.strip(":")
    entry = next((r for r in reactions if r["name"] == name and user in r["users"]), None)
    if entry is None:
        return False
    entry["users"].remove(user)
    entry["count"] = len(entry["users"])
    if not entry["users"]:
        reactions.remove(entry)
    if not reactions:
        message.pop("reactions", None)
    return True


def assistant_status(ctx: CallContext) -> Response:
    """setStatus: shown under the thread until the app replies there; an empty status clears it."""
    channel, thread_ts = ctx.channel("channel_id"), ctx.require("thread_ts")
    status = ctx.args.get("status")  # required, but "" is a value here: it clears the status
    if not isinstance(status, str):
        raise SlackError("invalid_arguments", arg="status")
    key = thread_key(channel.id, ctx.workspace.thread_root(channel.id, str(thread_ts)))
    if status.strip():
        ctx.workspace.statuses[key] = status
    else:
        ctx.workspace.statuses.pop(key, None)
    return {"ok": True}


def assistant_title(ctx: CallContext) -> Response:
    channel, thread_ts = ctx.channel("channel_id"), ctx.require("thread_ts")
    title = ctx.require("title")
    if not isinstance(title, str) or not title.strip():
        raise SlackError("invalid_arguments", arg="title")
    ctx.workspace.titles[thread_key(channel.id, ctx.workspace.thread_root(channel.id, str(thread_ts)))] = title
    return {"ok": True}


PROMPTS_LIMIT = 4  # Slack: "up to four" suggested prompts


def assistant_prompts(ctx: CallContext) -> Response:
    # thread_ts is optional for suggested prompts (they can be set app-wide per DM).
    ctx.channel("channel_id")
    prompts = ctx.require("prompts")
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= PROMPTS_LIMIT:
        raise SlackError("invalid_arguments", arg="prompts")
    for prompt in prompts:
        if not isinstance(prompt, dict) or not all(isinstance(prompt.get(k), str) for k in ("title", "message")):
            raise SlackError("invalid_arguments", arg="prompts")
    channel, thread_ts = ctx.channel("channel_id"), ctx.arg("thread_ts")
    key = thread_key(channel.id, thread_ts) if thread_ts else channel.id
    ctx.workspace.prompts[key] = [{"title": p["title"], "message": p["message"]} for p in prompts]
    return {"ok": True}


HANDLERS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "reactions.add": reactions_add,
    "reactions.remove": reactions_remove,
    "assistant.threads.setStatus": assistant_status,
    "assistant.threads.setTitle": assistant_title,
    "assistant.threads.setSuggestedPrompts": assistant_prompts,
}
