"""auth, users, reactions and assistant.threads methods."""

from __future__ import annotations

from typing import Any

from .base import CallContext, Handler, Response, SlackError


def auth_test(ctx: CallContext) -> Response:
    ws = ctx.workspace
    user = ws.users[ctx.actor]
    response: Response = {
        "ok": True,
        "url": f"{ctx.base_url}/",
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
    reactions = _reactions_of(ctx)
    name = ctx.require("name", "invalid_name").strip(":")
    entry = next((r for r in reactions if r["name"] == name and ctx.actor in r["users"]), None)
    if entry is None:
        raise SlackError("no_reaction")
    entry["users"].remove(ctx.actor)
    entry["count"] = len(entry["users"])
    if not entry["users"]:
        reactions.remove(entry)
    return {"ok": True}


def _reactions_of(ctx: CallContext) -> list[dict[str, Any]]:
    """The live reactions list of the addressed message (reactions take `timestamp`)."""
    message = ctx.message(ctx.channel(), "timestamp")
    reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
    return reactions


def assistant_thread(ctx: CallContext) -> Response:
    """setStatus/setTitle/setSuggestedPrompts: only recorded; check the target exists."""
    ctx.channel("channel_id")
    ctx.require("thread_ts")
    return {"ok": True}


def assistant_prompts(ctx: CallContext) -> Response:
    # thread_ts is optional for suggested prompts (they can be set app-wide per DM).
    ctx.channel("channel_id")
    if not isinstance(ctx.require("prompts"), list):
        raise SlackError("invalid_arguments", arg="prompts")
    return {"ok": True}


HANDLERS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "reactions.add": reactions_add,
    "reactions.remove": reactions_remove,
    "assistant.threads.setStatus": assistant_thread,
    "assistant.threads.setTitle": assistant_thread,
    "assistant.threads.setSuggestedPrompts": assistant_prompts,
}
