"""Feedback as Slack sends it, where the stand-in has no builder (feedback_buttons clicks,
view_submission), and what Ember made of it."""

from __future__ import annotations

import itertools
from typing import Any

from bot.runtime import Ember
from db.feedback import votes_for
from playground import LocalSlack
from playground.events import DEFAULT_VERIFICATION_TOKEN, TEAM_DOMAIN, new_trigger_id

_event_ids = itertools.count(1)


def click(slack: LocalSlack, channel: str, user: str, message_ts: str, action_id: str, *, positive: bool = True) -> Any:
    """A block_actions payload for a click on the control `action_id` shown on the message."""
    message = slack.message(channel, message_ts)
    assert message is not None
    block, element = _find_control(message, action_id)
    if element["type"] == "feedback_buttons":
        # Slack reports the half that was clicked: its text and value, under the element's action_id.
        element = element["positive_button" if positive else "negative_button"] | {"type": "feedback_buttons"}
    payload = slack.block_action(channel, user, message_ts, action_id, value=element["value"], block_id=block)
    payload["actions"][0].update(type=element["type"], text=element["text"])
    return payload


def _find_control(message: dict[str, Any], action_id: str) -> tuple[str, dict[str, Any]]:
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return block.get("block_id", ""), element
    raise AssertionError(f"no {action_id} control on the message: {message.get('blocks')}")


def view_submission(slack: LocalSlack, user: str, view: dict[str, Any], text: str) -> dict[str, Any]:
    """Slack's view_submission payload for `view` with `text` typed into its input."""
    [field] = [block for block in view["blocks"] if block["type"] == "input"]
    typed = {field["element"]["action_id"]: {"type": field["element"]["type"], "value": text}}
    ws = slack.workspace
    name = ws.users[user].name
    return {
        "type": "view_submission",
        "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user, "username": name, "name": name, "team_id": ws.team_id},
        "api_app_id": ws.app_id,
        "token": DEFAULT_VERIFICATION_TOKEN,
        "trigger_id": new_trigger_id(),
        "view": view | {"state": {"values": {field["block_id"]: typed}}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def reaction_added(
    slack: LocalSlack, user: str, channel: str, ts: str, reaction: str, kind: str = "reaction_added"
) -> dict[str, Any]:
    """The Events API envelope of `user` adding (or, with kind="reaction_removed", removing) `reaction`
    on the message at (channel, ts)."""
    message = slack.message(channel, ts)
    assert message is not None
    ws = slack.workspace
    event_ts = ws.clock.next()
    event = {
        "type": kind,
        "user": user,
        "reaction": reaction,
        "item_user": message.get("user"),
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": event_ts,
    }
    return {
        "token": DEFAULT_VERIFICATION_TOKEN,
        "team_id": ws.team_id,
        "context_team_id": ws.team_id,
        "context_enterprise_id": None,
        "api_app_id": ws.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": f"EvR{next(_event_ids):08d}",
        "event_time": int(float(event_ts)),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": ws.team_id,
                "user_id": ws.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def thanks(slack: LocalSlack, user: str, count: int) -> list[dict[str, Any]]:
    """Wait until `user` has been sent `count` ephemerals; return them (Ember sends them after committing)."""
    slack.wait_for("chat.postEphemeral", lambda call: call.args.get("user") == user, count=count)
    return [e for e in slack.ephemerals() if e["user"] == user]


def votes(bot: Ember, turn_id: int) -> list[tuple[str, int, str, str | None]]:
    with bot.db.session() as session:
        return [(v.user_id, v.value, v.source, v.correction) for v in votes_for(session, turn_id=turn_id)]
