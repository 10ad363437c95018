"""`/ember`: `ask <question>` answers in the channel, `help` lists the commands, anything else gets the usage."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from db.repo import Conversation
from db.schema import TrainingRun
from handlers.answering import FAILURE_REPLY
from handlers.qa import Question
from handlers.services import CONTEXT_KEY, Services
from handlers.text import USAGE, clip_for_slack

log = logging.getLogger(__name__)


def on_ember_command(
    ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext
) -> None:
    subcommand, _, rest = (command.get("text") or "").strip().partition(" ")
    subcommand, rest = subcommand.lower(), rest.strip()
    services: Services = context[CONTEXT_KEY]
    if subcommand in ("", "help"):
        ack(text=USAGE, response_type="ephemeral")
    elif subcommand == "remember":
        ack(text=_remember(services, client, command, rest), response_type="ephemeral")
    elif subcommand == "status":
        ack(text=status_text(services), response_type="ephemeral")
    elif subcommand == "forget":
        ack(blocks=forget_confirmation(), text="Forget everything I stored of you?", response_type="ephemeral")
    elif subcommand != "ask":
        ack(text=f"I don't know `/ember {subcommand}`.\n\n{USAGE}", response_type="ephemeral")
    elif not rest:
        ack(text=f"Ask what? Try `/ember ask how do I reset the VPN?`\n\n{USAGE}", response_type="ephemeral")
    else:
        # Slack wants the ack within 3 s; the answer follows once the model has written it.
        ack(text=_thinking(context[CONTEXT_KEY], rest), response_type="ephemeral")
        _answer(context[CONTEXT_KEY], client, respond, command, rest)


def _remember(services: Services, client: WebClient, command: dict[str, Any], fact: str) -> str:
    if not fact:
        return "Remember what? Try `/ember remember The VPN host is vpn.example.com`"
    if services.recall is None:
        return "My memory is switched off here, so I can't pin facts."
    channel = command["channel_id"]
    services.recall.pin_fact(
        conversation=Conversation(command.get("team_id", ""), channel, services.channel_type(client, channel), None),
        user_id=command["user_id"],
        text=fact,
        source_ts=None,
    )
    return f"Pinned for this channel: _{fact}_"


FORGET_CONFIRM = "ember_forget_confirm"
FORGET_CANCEL = "ember_forget_cancel"


def forget_confirmation() -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "This deletes every question you asked me in this workspace, my answers to them, "
                "your votes, and what I remembered from you. It cannot be undone. Go ahead?",
            },
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": FORGET_CONFIRM,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Forget everything"},
                },
                {"type": "button", "action_id": FORGET_CANCEL, "text": {"type": "plain_text", "text": "Cancel"}},
            ],
        },
    ]


def on_forget_confirm(ack: Ack, body: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    ack()
    services: Services = context[CONTEXT_KEY]
    workspace = (body.get("team") or {}).get("id") or body.get("team_id", "")
    user = body["user"]["id"]
    if services.recall is not None:
        gone = services.recall.forget(workspace_id=workspace, user_id=user)
        text = (
            f"Done. I removed {gone.turns} questions with my answers, {gone.votes} votes and {gone.memories} memories."
        )
    else:
        text = "My memory is switched off here; nothing of yours is stored beyond Slack itself."
    respond(text=text, replace_original=True, response_type="ephemeral")


def on_forget_cancel(ack: Ack, respond: Respond) -> None:
    ack()
    respond(text="Nothing was deleted.", replace_original=True, response_type="ephemeral")


def status_text(services: Services) -> str:
    """The serving model, and what the last training run did."""
    with services.db.session() as session:
        run = session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1)).first()
    lines = [f"*Model:* `{services.qa.engine.version}` (queue: {services.qa.engine.queue_depth})"]
    if run is None:
        lines.append("*Last training run:* none yet")
    else:
        when = run.finished_at or run.started_at
        outcome = f"{run.status}" + (f", candidate `{run.candidate_version}`" if run.candidate_version else "")
        lines.append(
            f"*Last training run:* {outcome} ({run.examples} examples: {run.desirable} good, "
            f"{run.undesirable} bad) at {when:%Y-%m-%d %H:%M} UTC"
        )
    return "\n".join(lines)


def _thinking(services: Services, question: str) -> str:
    depth = services.qa.engine.queue_depth
    if services.max_queue and depth >= services.max_queue:
        return (
            f"I'm busy right now: your question is queued (position {depth + 1}). Then I'll think about: _{question}_"
        )
    return f"Thinking about: _{question}_ …"


def _answer(services: Services, client: WebClient, respond: Respond, command: dict[str, Any], text: str) -> None:
    channel = command["channel_id"]
    question = Question(
        conversation=Conversation(command.get("team_id", ""), channel, services.channel_type(client, channel), None),
        user_id=command["user_id"],
        text=text,
        source="command",
    )
    try:
        answer = services.qa.answer(question)
    except Exception:
        log.exception("answering /ember ask in %s failed", channel)
        respond(text=FAILURE_REPLY, response_type="ephemeral")
        return
    answer_ts = _post(client, respond, channel, f"<@{question.user_id}> asked: _{text}_\n\n{answer.text}")
    # The posted answer starts a thread; a mention in that thread continues this conversation.
    conversation = dataclasses.replace(question.conversation, thread_ts=answer_ts)
    services.qa.remember(dataclasses.replace(question, conversation=conversation), answer, answer_ts=answer_ts)


def _post(client: WebClient, respond: Respond, channel: str, text: str) -> str | None:
    """Post in the channel; where Ember is not a member, answer through the command's response_url."""
    try:
        return str(client.chat_postMessage(channel=channel, text=clip_for_slack(text))["ts"])
    except SlackApiError as exc:
        log.info("chat.postMessage to %s failed (%s); using response_url", channel, exc.response.get("error"))
        respond(text=clip_for_slack(text), response_type="in_channel")
        return None


__all__ = ["on_ember_command"]
