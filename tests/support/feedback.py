"""Feedback as Slack sends it (clicks on feedback controls, view_submission, reactions), built with
the stand-in's builders, and what Ember made of it."""

from __future__ import annotations

from typing import Any

from bot.runtime import Ember
from db.feedback import votes_for
from playground import LocalSlack
from playground.events import element_action


def click(slack: LocalSlack, channel: str, user: str, message_ts: str, action_id: str, *, positive: bool = True) -> Any:
    """A block_actions payload for a click on the control `action_id` shown on the message
    (on feedback_buttons, its positive or negative half)."""
    message = slack.message(channel, message_ts)
    assert message is not None
    action = element_action(message, action_id, positive=positive)
    assert action is not None, f"no {action_id} control on the message: {message.get('blocks')}"
    payload = slack.block_action(channel, user, message_ts, action_id, block_id=action["block_id"])
    payload["actions"][0].update(action)
    return payload


def view_submission(slack: LocalSlack, user: str, view: dict[str, Any], text: str) -> dict[str, Any]:
    """Slack's view_submission payload for `view` with `text` typed into its input."""
    [field] = [block for block in view["blocks"] if block["type"] == "input"]
    typed = {field["element"]["action_id"]: {"type": field["element"]["type"], "value": text}}
    return slack.events.view_submission(user, view, {field["block_id"]: typed})


def reaction_added(
    slack: LocalSlack, user: str, channel: str, ts: str, reaction: str, kind: str = "reaction_added"
) -> dict[str, Any]:
    """The Events API envelope of `user` adding (or, with kind="reaction_removed", removing) `reaction`
    on the message at (channel, ts); the stored message keeps its reactions as they are."""
    message = slack.message(channel, ts)
    assert message is not None
    ch = slack.workspace.require_channel(channel)
    build = slack.events.reaction_removed if kind == "reaction_removed" else slack.events.reaction_added
    return build(ch, message, user, reaction)


def thanks(slack: LocalSlack, user: str, count: int) -> list[dict[str, Any]]:
    """Wait until `user` has been sent `count` ephemerals; return them (Ember sends them after committing)."""
    slack.wait_for("chat.postEphemeral", lambda call: call.args.get("user") == user, count=count)
    return [e for e in slack.ephemerals() if e["user"] == user]


def votes(bot: Ember, turn_id: int) -> list[tuple[str, int, str, str | None]]:
    with bot.db.session() as session:
        return [(v.user_id, v.value, v.source, v.correction) for v in votes_for(session, turn_id=turn_id)]
