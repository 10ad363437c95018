"""`/ember`: `ask <question>` answers in the channel, `help` lists the commands, anything else gets the usage."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db.repo import Conversation
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
    if subcommand in ("", "help"):
        ack(text=USAGE, response_type="ephemeral")
    elif subcommand != "ask":
        ack(text=f"I don't know `/ember {subcommand}`.\n\n{USAGE}", response_type="ephemeral")
    elif not rest:
        ack(text=f"Ask what? Try `/ember ask how do I reset the VPN?`\n\n{USAGE}", response_type="ephemeral")
    else:
        # Slack wants the ack within 3 s; the answer follows once the model has written it.
        ack(text=_thinking(context[CONTEXT_KEY], rest), response_type="ephemeral")
        _answer(context[CONTEXT_KEY], client, respond, command, rest)


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
