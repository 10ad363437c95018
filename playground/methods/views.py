"""views.open, views.push and views.update: modals; views.publish: a user's App Home tab.

Each user has a stack of open views (root first) in `Workspace.views`; views.open starts a new stack
for the user its trigger_id was minted for, views.push adds to it (Slack allows three deep), and
views.update replaces one view's content in place. A view comes back as Slack returns it: with an
id, a hash that changes on every update, empty state, and the root/previous view ids.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..workspace import Message, Workspace
from .base import CallContext, Handler, Response, SlackError, public

PUSH_LIMIT = 3  # Slack: "a maximum of 3 views can be in the view stack"
BLOCK_LIMIT = 100  # Slack: "up to 100 blocks" in a modal or home tab


def open_view(ctx: CallContext) -> Response:
    user = _take_trigger(ctx)
    view = show(ctx.workspace, _view_arg(ctx))
    ctx.workspace.views[user] = [view]
    return {"ok": True, "view": public(view)}


def push_view(ctx: CallContext) -> Response:
    user = _take_trigger(ctx)
    stack = ctx.workspace.views.setdefault(user, [])
    if len(stack) >= PUSH_LIMIT:
        raise SlackError("push_limit_reached")
    previous = stack[-1] if stack else None
    view = show(ctx.workspace, _view_arg(ctx))
    if previous is not None:
        view.update(previous_view_id=previous["id"], root_view_id=previous["root_view_id"])
    stack.append(view)
    return {"ok": True, "view": public(view)}


def update_view(ctx: CallContext) -> Response:
    view_id, external_id = ctx.arg("view_id"), ctx.arg("external_id")
    if view_id is None and external_id is None:
        raise SlackError("invalid_arguments", arg="view_id")
    found = _find(ctx, view_id, external_id)
    if found is None:
        raise SlackError("not_found")
    stack, index = found
    old = stack[index]
    if ctx.arg("hash") is not None and ctx.arg("hash") != old["hash"]:
        raise SlackError("hash_conflict")
    view = show(ctx.workspace, _view_arg(ctx), view_id=old["id"])
    view.update(previous_view_id=old["previous_view_id"], root_view_id=old["root_view_id"])
    stack[index] = view
    return {"ok": True, "view": public(view)}


def publish_view(ctx: CallContext) -> Response:
    """The home tab of `user_id`, replaced whole; `hash`, when given, must match the published one."""
    user = str(ctx.require("user_id"))
    ctx.workspace.require_user(user)
    view = ctx.require("view")
    if not isinstance(view, dict) or view.get("type") != "home" or not isinstance(view.get("blocks"), list):
        raise SlackError("invalid_arguments", arg="view")
    if len(view["blocks"]) > BLOCK_LIMIT:
        raise SlackError("invalid_arguments", arg="view.blocks")
    old = ctx.workspace.homes.get(user)
    if old is not None and ctx.arg("hash") is not None and ctx.arg("hash") != old["hash"]:
        raise SlackError("hash_conflict")
    home = show(ctx.workspace, view, view_id=old["id"] if old else None)
    ctx.workspace.homes[user] = home
    return {"ok": True, "view": public(home)}


def find_view(views: dict[str, list[Message]], user: str, view_id: str) -> Message | None:
    """The open view `view_id` of `user`, if it is open."""
    return next((v for v in views.get(user, []) if v["id"] == view_id), None)


def new_hash() -> str:
    return f"{int(time.time())}.{secrets.token_hex(4)}"


def _take_trigger(ctx: CallContext) -> str:
    """The user a trigger_id was minted for; a trigger opens one view only."""
    trigger_id = ctx.require("trigger_id", "invalid_trigger_id")
    user = ctx.workspace.triggers.pop(str(trigger_id), None)
    if user is None:
        raise SlackError("invalid_trigger_id")
    return user


def _view_arg(ctx: CallContext) -> dict[str, Any]:
    return check_view(ctx.require("view"))


def check_view(view: Any) -> dict[str, Any]:
    """`view` if it is a modal Slack would show (a title and blocks); SlackError otherwise."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise SlackError("invalid_arguments", arg="view")
    if not isinstance(view.get("title"), dict) or not isinstance(view.get("blocks"), list):
        raise SlackError("invalid_arguments", arg="view")
    return view


def _find(ctx: CallContext, view_id: str | None, external_id: str | None) -> tuple[list[Message], int] | None:
    for stack in ctx.workspace.views.values():
        for index, view in enumerate(stack):
            if view["id"] == view_id or (external_id is not None and view.get("external_id") == external_id):
                return stack, index
    return None


def show(ws: Workspace, view: dict[str, Any], view_id: str | None = None) -> Message:
    """`view` (as an app sends it) as Slack stores and returns it: a new view, or `view_id`'s new content."""
    view_id = view_id or ws.new_id("V")
    defaults: Message = {
        "private_metadata": "",
        "callback_id": "",
        "external_id": "",
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
    }
    return {
        **defaults,
        **public(view),
        "id": view_id,
        "team_id": ws.team_id,
        "state": {"values": {}},
        "hash": new_hash(),
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": ws.app_id,
        "app_installed_team_id": ws.team_id,
        "bot_id": ws.bot_id,
    }


HANDLERS: dict[str, Handler] = {
    "views.open": open_view,
    "views.push": push_view,
    "views.update": update_view,
    "views.publish": publish_view,
}
