"""`/ember`: `ask <question>` answers in the channel, `help` lists the commands, anything else gets the usage."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient

from db.repo import forget_user, latest_training_run
from handlers.slack.answering import ReplyTarget, answer_and_post, queued_note
from handlers.slack.asks import ask_from_command
from handlers.slack.digest_commands import on_digest, on_summarize_command
from handlers.slack.services import CONTEXT_KEY, Services
from handlers.slack.text import USAGE


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
    elif subcommand == "digest":
        on_digest(ack, command, client, respond, context, rest)
    elif subcommand in ("summarize", "summarise"):
        on_summarize_command(ack, command, client, respond, context, rest)
    elif subcommand == "forget":
        ack(blocks=forget_confirmation(), text="Forget everything I stored of you?", response_type="ephemeral")
    elif subcommand != "ask":
        ack(text=f"I don't know `/ember {subcommand}`.\n\n{USAGE}", response_type="ephemeral")
    elif not rest:
        ack(text=f"Ask what? Try `/ember ask how do I reset the VPN?`\n\n{USAGE}", response_type="ephemeral")
    else:
        # Slack wants the ack within 3 s; the answer streams into the channel as the model writes it.
        ack(text=_thinking(services, rest), response_type="ephemeral")
        ask = ask_from_command(command, channel_type=services.channel_type(client, command["channel_id"]), text=rest)
        answer_and_post(
            services, client, ask, bot_user_id=context.bot_user_id, target=ReplyTarget.for_command(ask, respond)
        )


def _remember(services: Services, client: WebClient, command: dict[str, Any], fact: str) -> str:
    if not fact:
        return "Remember what? Try `/ember remember The VPN host is vpn.example.com`"
    if services.recall is None:
        return "My memory is switched off here, so I can't pin facts."
    ask = ask_from_command(command, channel_type=services.channel_type(client, command["channel_id"]), text=fact)
    services.recall.pin_fact(conversation=ask.conversation, user_id=ask.user_id, text=ask.text, source_ts=None)
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
                "your votes, your personal recaps, and what I remembered from you. It cannot be undone. Go ahead?",
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
    # Turns and votes are stored with day-time memory off too, so they go either way.
    with services.db.session() as session:
        gone = forget_user(session, workspace_id=workspace, user_id=user, index=services.index)
    text = f"Done. I removed {gone.turns} questions with my answers, {gone.votes} votes and {gone.memories} memories."
    if gone.digests:
        text += f" Your personal recaps and votes on digests ({gone.digests}) are gone too."
    respond(text=text, replace_original=True, response_type="ephemeral")


def on_forget_cancel(ack: Ack, respond: Respond) -> None:
    ack()
    respond(text="Nothing was deleted.", replace_original=True, response_type="ephemeral")


def status_text(services: Services) -> str:
    """The serving model, and what the last training run did."""
    with services.db.session() as session:
        run = latest_training_run(session)
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
    note = queued_note(services)
    if note is not None:
        return f"{note} Then I'll think about: _{question}_"
    return f"Thinking about: _{question}_ …"


__all__ = ["on_ember_command"]
