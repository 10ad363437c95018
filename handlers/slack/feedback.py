"""Feedback on answers: thumbs up/down buttons, :+1:/:-1: reactions, and "Suggest a better answer".

Every answer carries `feedback_blocks(...)`: Slack's `feedback_buttons` in a `context_actions` block
(which holds only feedback and icon buttons, so the suggestion button gets an `actions` block of its
own). Where a client or workspace refuses those blocks, `fallback_feedback_blocks(...)` does the same
with plain buttons. Feedback finds its turn by the message it was given on (channel + ts), is stored
as one vote per person per turn (the latest wins, see db.feedback) and is acknowledged with an
ephemeral thanks in the answer's thread. Listeners ack first: the vote is written after.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from db.feedback import find_turn, record_vote, withdraw_reaction_vote
from db.schema import Turn
from handlers.slack.services import CONTEXT_KEY, Services

log = logging.getLogger(__name__)

Block = dict[str, Any]

FEEDBACK_ACTION = "ember_feedback"  # the feedback_buttons element
VOTE_UP_ACTION = "ember_vote_up"  # plain-button fallback
VOTE_DOWN_ACTION = "ember_vote_down"
SUGGEST_ACTION = "ember_suggest"
SUGGEST_CALLBACK = "ember_suggest_answer"  # the modal's callback_id
FEEDBACK_BLOCK = "ember_feedback"
SUGGEST_BLOCK = "ember_feedback_suggest"
CORRECTION_BLOCK = "correction"  # the modal's input block, named by `response_action: errors`
CORRECTION_INPUT = "text"

UP, DOWN = "up", "down"
DIRECTIONS = {UP: 1, DOWN: -1}
# Slack sends skin tones as "+1::skin-tone-3"; the part before "::" is the reaction.
REACTIONS = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
PLAIN_TEXT_INPUT_MAX = 3_000  # Slack's limit for plain_text_input
SECTION_TEXT_MAX = 3_000

THANKS_UP = "Thanks for the feedback! Glad that helped."
THANKS_DOWN = "Thanks for the feedback. If you know the right answer, *Suggest a better answer* teaches it to me."
THANKS_CORRECTION = "Thanks! I'll remember your answer for questions like this one."
GONE = "Sorry, I can't find that answer any more, so I couldn't record your feedback."
FAILED = "Sorry, I couldn't save your feedback just now. Please try again in a moment."
EMPTY_CORRECTION = "Please write the answer you'd have liked, or press Cancel."


# --- blocks ------------------------------------------------------------------------------------


def feedback_blocks(turn_ref: str) -> list[Block]:
    """Thumbs up/down (Slack's feedback_buttons) and "Suggest a better answer", for an answer's last message.

    `turn_ref` is the ts of the question the answer replies to (or ""): an answer split over several
    messages carries these blocks on its last part while its turn is stored under the first part's ts.
    """
    feedback = {
        "type": "feedback_buttons",
        "action_id": FEEDBACK_ACTION,
        "positive_button": _feedback_button("👍", "This answer was helpful", f"{UP}:{turn_ref}"),
        "negative_button": _feedback_button("👎", "This answer was not helpful", f"{DOWN}:{turn_ref}"),
    }
    return [
        {"type": "context_actions", "block_id": FEEDBACK_BLOCK, "elements": [feedback]},
        {"type": "actions", "block_id": SUGGEST_BLOCK, "elements": [_suggest_button(turn_ref)]},
    ]


def fallback_feedback_blocks(turn_ref: str) -> list[Block]:
    """The same controls as plain buttons, for clients and workspaces without feedback_buttons."""
    elements = [
        _button(VOTE_UP_ACTION, "👍 Helpful", f"{UP}:{turn_ref}"),
        _button(VOTE_DOWN_ACTION, "👎 Not helpful", f"{DOWN}:{turn_ref}"),
        _suggest_button(turn_ref),
    ]
    return [{"type": "actions", "block_id": FEEDBACK_BLOCK, "elements": elements}]


def _feedback_button(text: str, label: str, value: str) -> Block:
    return {"text": _plain(text), "accessibility_label": label, "value": value}


def _suggest_button(turn_ref: str) -> Block:
    return _button(SUGGEST_ACTION, "Suggest a better answer", f"suggest:{turn_ref}")


def _button(action_id: str, text: str, value: str) -> Block:
    return {"type": "button", "action_id": action_id, "text": _plain(text), "value": value}


def _plain(text: str) -> Block:
    return {"type": "plain_text", "text": text, "emoji": True}


@dataclass(frozen=True)
class SuggestTarget:
    """The answer a suggestion is for; travels through the modal as its private_metadata."""

    channel_id: str
    answer_ts: str
    thread_ts: str | None

    def to_metadata(self) -> str:
        return json.dumps({"channel": self.channel_id, "answer_ts": self.answer_ts, "thread_ts": self.thread_ts})

    @classmethod
    def from_metadata(cls, metadata: str | None) -> SuggestTarget | None:
        try:
            data = json.loads(metadata or "")
            return cls(str(data["channel"]), str(data["answer_ts"]), data.get("thread_ts"))
        except (ValueError, TypeError, KeyError):
            return None


def suggest_modal(target: SuggestTarget, *, question: str) -> Block:
    question_text = f"Question: {question}"
    if len(question_text) > SECTION_TEXT_MAX:
        question_text = question_text[: SECTION_TEXT_MAX - 1] + "…"
    return {
        "type": "modal",
        "callback_id": SUGGEST_CALLBACK,
        "title": _plain("Suggest a better answer"),  # Slack allows 24 characters
        "submit": _plain("Send"),
        "close": _plain("Cancel"),
        "private_metadata": target.to_metadata(),
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": question_text}},
            {
                "type": "input",
                "block_id": CORRECTION_BLOCK,
                "label": _plain("What should I have said?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": CORRECTION_INPUT,
                    "multiline": True,
                    "max_length": PLAIN_TEXT_INPUT_MAX,
                    "placeholder": _plain("The answer you'd have liked"),
                },
            },
        ],
    }


# --- listeners ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The message feedback was given on, and where to answer the person who gave it."""

    channel_id: str
    message_ts: str
    question_ts: str | None
    thread_ts: str | None


@dataclass(frozen=True)
class _Click:
    user_id: str
    value: str
    target: _Target


def on_feedback(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """A click on the feedback_buttons element."""
    ack()
    _vote_from_click(body, client, context)


def on_vote_button(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """A click on a plain thumbs up/down button (fallback_feedback_blocks)."""
    ack()
    _vote_from_click(body, client, context)


def on_suggest(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Open the "Suggest a better answer" modal, if the answer's turn is still stored."""
    ack()
    click = _click(body)
    if click is None:
        return
    services: Services = context[CONTEXT_KEY]
    target = click.target
    with services.db.session() as session:
        turn = _turn_of(session, target)
    if turn is None or turn.answer_ts is None:
        _tell(client, target.channel_id, click.user_id, target.thread_ts, GONE)
        return
    modal = suggest_modal(SuggestTarget(turn.channel_id, turn.answer_ts, turn.thread_ts), question=turn.question)
    try:
        client.views_open(trigger_id=body["trigger_id"], view=modal)
    except SlackApiError as exc:
        log.warning("could not open the suggestion modal for %s: %s", click.user_id, exc.response.get("error"))


def on_suggest_submit(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """The modal's submission: a correction, stored as a thumbs down with the better answer."""
    text = _submitted_text(view)
    if not text:
        # Slack requires the input, but whitespace passes its check.
        ack(response_action="errors", errors={CORRECTION_BLOCK: EMPTY_CORRECTION})
        return
    ack()
    suggested = SuggestTarget.from_metadata(view.get("private_metadata"))
    if suggested is None:
        log.warning("suggestion modal without a target: %r", view.get("private_metadata"))
        return
    target = _Target(suggested.channel_id, suggested.answer_ts, None, suggested.thread_ts)
    _vote(context, client, target, body["user"]["id"], -1, "modal", correction=text)


def on_reaction_added(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """:+1: or :-1: on one of Ember's answers counts as a vote; any other reaction is not feedback."""
    reaction = _reaction(event, context)
    if reaction is None:
        return
    target, voter, value = reaction
    # A reaction on a message Ember has no turn for (a help reply, a deleted turn) is not a vote.
    _vote(context, client, target, voter, value, "reaction", tell_if_missing=False)


def on_reaction_removed(event: dict[str, Any], context: BoltContext) -> None:
    """Taking the :+1:/:-1: off an answer takes its vote back, quietly (Slack shows the change)."""
    reaction = _reaction(event, context)
    if reaction is None:
        return
    target, voter, value = reaction
    services: Services = context[CONTEXT_KEY]
    try:
        with services.db.session() as session:
            turn = _turn_of(session, target)
            if turn is not None:
                withdraw_reaction_vote(session, turn_id=turn.id, user_id=voter, value=value)
    except Exception:
        log.exception("could not withdraw the reaction vote of %s on %s", voter, target)


def _reaction(event: dict[str, Any], context: BoltContext) -> tuple[_Target, str, int] | None:
    """The answer, the person and the vote a reaction event stands for; None if it is not feedback."""
    value = REACTIONS.get(str(event.get("reaction", "")).split("::")[0])
    item = event.get("item") or {}
    voter = event.get("user")
    if value is None or item.get("type") != "message" or not voter or voter == context.bot_user_id:
        return None
    if context.bot_user_id and event.get("item_user") not in (None, context.bot_user_id):
        return None  # not Ember's message: no turn to find
    return _Target(str(item.get("channel")), str(item.get("ts")), None, None), str(voter), value


def register_feedback(app: App) -> None:
    """Wire the feedback listeners."""
    app.action(FEEDBACK_ACTION)(on_feedback)
    app.action(VOTE_UP_ACTION)(on_vote_button)
    app.action(VOTE_DOWN_ACTION)(on_vote_button)
    app.action(SUGGEST_ACTION)(on_suggest)
    app.view(SUGGEST_CALLBACK)(on_suggest_submit)
    app.event("reaction_added")(on_reaction_added)
    app.event("reaction_removed")(on_reaction_removed)


# --- the shared path ---------------------------------------------------------------------------


def _vote_from_click(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    click = _click(body)
    if click is None:
        return
    value = DIRECTIONS.get(click.value.partition(":")[0])
    if value is None:
        log.warning("feedback click with an unknown value %r", click.value)
        return
    _vote(context, client, click.target, click.user_id, value, "button")


def _click(body: dict[str, Any]) -> _Click | None:
    """Who clicked what on which message, from a block_actions payload."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel_id = container.get("channel_id") or (body.get("channel") or {}).get("id")
    message_ts = container.get("message_ts") or message.get("ts")
    actions = body.get("actions") or []
    if not channel_id or not message_ts or not actions:
        log.warning("feedback click without a message: %s", {k: body.get(k) for k in ("type", "container")})
        return None
    value = str(actions[0].get("value") or "")
    turn_ref = value.partition(":")[2] or None
    thread_ts = container.get("thread_ts") or message.get("thread_ts")
    return _Click(body["user"]["id"], value, _Target(channel_id, message_ts, turn_ref, thread_ts))


def _vote(
    context: BoltContext,
    client: WebClient,
    target: _Target,
    user_id: str,
    value: int,
    source: str,
    *,
    correction: str | None = None,
    tell_if_missing: bool = True,
) -> None:
    services: Services = context[CONTEXT_KEY]
    try:
        with services.db.session() as session:
            turn = _turn_of(session, target)
            if turn is not None:
                record_vote(
                    session,
                    turn_id=turn.id,
                    user_id=user_id,
                    value=value,
                    source=source,
                    correction=correction,
                    # A suggested answer is remembered at once, searchable like a correction in a thread.
                    embedder=services.embedder,
                    index=services.index,
                )
    except Exception:
        log.exception("could not store %s feedback from %s on %s", source, user_id, target)
        _tell(client, target.channel_id, user_id, target.thread_ts, FAILED)
        return
    if turn is None:
        if tell_if_missing:
            _tell(client, target.channel_id, user_id, target.thread_ts, GONE)
        return
    # Thanks only once the vote is committed, so whoever sees the thanks can read the vote.
    _tell(client, turn.channel_id, user_id, turn.thread_ts, _thanks(value, correction))


def _turn_of(session: Session, target: _Target) -> Turn | None:
    return find_turn(
        session,
        channel_id=target.channel_id,
        message_ts=target.message_ts,
        question_ts=target.question_ts,
        thread_ts=target.thread_ts,
    )


def _thanks(value: int, correction: str | None) -> str:
    if correction is not None:
        return THANKS_CORRECTION
    return THANKS_UP if value > 0 else THANKS_DOWN


def _submitted_text(view: dict[str, Any]) -> str:
    values = ((view.get("state") or {}).get("values") or {}).get(CORRECTION_BLOCK) or {}
    return str((values.get(CORRECTION_INPUT) or {}).get("value") or "").strip()


def _tell(client: WebClient, channel: str, user: str, thread_ts: str | None, text: str) -> None:
    """An ephemeral note to one person; feedback is stored either way, so a failure here is logged only."""
    try:
        client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s about their feedback: %s", user, exc.response.get("error"))


__all__ = [
    "FEEDBACK_ACTION",
    "SUGGEST_ACTION",
    "SUGGEST_CALLBACK",
    "VOTE_DOWN_ACTION",
    "VOTE_UP_ACTION",
    "SuggestTarget",
    "fallback_feedback_blocks",
    "feedback_blocks",
    "on_feedback",
    "on_reaction_added",
    "on_reaction_removed",
    "on_suggest",
    "on_suggest_submit",
    "on_vote_button",
    "register_feedback",
    "suggest_modal",
]
