"""Who asked what, and where: built from Slack's payloads in this one place, for every surface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from db.repo import Conversation
from handlers.qa.types import Question, ThreadMessage
from handlers.slack.text import strip_mention


@dataclass(frozen=True)
class SlackAsk:
    """A question as it arrived from Slack, before Ember looked anything up."""

    workspace_id: str
    channel_id: str
    channel_type: str
    user_id: str
    text: str
    ts: str | None
    # The thread the answer goes to; None answers top-level (a DM outside a thread, a slash command).
    reply_thread_ts: str | None
    source: str
    event_id: str | None = None

    @property
    def conversation(self) -> Conversation:
        return Conversation(self.workspace_id, self.channel_id, self.channel_type, self.reply_thread_ts)

    def question(self, thread: Sequence[ThreadMessage] = ()) -> Question:
        return Question(
            conversation=self.conversation,
            user_id=self.user_id,
            text=self.text,
            source=self.source,
            question_ts=self.ts,
            thread=thread,
        )


def ask_from_event(
    body: Mapping[str, Any],
    event: Mapping[str, Any],
    *,
    channel_type: str,
    bot_user_id: str | None,
    source: str,
    in_thread: bool,
) -> SlackAsk:
    """A message event (a mention, a DM). `in_thread`: answer in the message's thread, starting one
    when it is top-level (mentions); otherwise answer where it was said (DMs)."""
    ts = str(event["ts"])
    thread_ts = event.get("thread_ts")
    return SlackAsk(
        workspace_id=str(body.get("team_id") or event.get("team") or ""),
        channel_id=str(event["channel"]),
        channel_type=channel_type,
        user_id=str(event["user"]),
        text=strip_mention(str(event.get("text") or ""), bot_user_id),
        ts=ts,
        reply_thread_ts=(thread_ts or ts) if in_thread else thread_ts,
        source=source,
        event_id=body.get("event_id"),
    )


def ask_from_command(command: Mapping[str, Any], *, channel_type: str, text: str) -> SlackAsk:
    """A slash command's question (or fact): top-level in the channel it was typed in."""
    return SlackAsk(
        workspace_id=str(command.get("team_id") or ""),
        channel_id=str(command["channel_id"]),
        channel_type=channel_type,
        user_id=str(command["user_id"]),
        text=text,
        ts=None,
        reply_thread_ts=None,
        source="command",
    )
