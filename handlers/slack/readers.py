"""Slack's conversations, read for the QA layer: Slack's JSON in, plain ThreadMessages out."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers.qa.tools import ToolError
from handlers.qa.types import ThreadMessage
from handlers.slack.text import strip_mention

log = logging.getLogger(__name__)

THREAD_FETCH_LIMIT = 100


def thread_message(message: Mapping[str, Any], bot_user_id: str | None) -> ThreadMessage:
    user = message.get("user")
    return ThreadMessage(
        ts=str(message.get("ts", "")),
        user_id=user,
        text=strip_mention(str(message.get("text", "")), bot_user_id),
        from_ember=bool(bot_user_id) and user == bot_user_id,
    )


def fetch_thread(
    client: WebClient, channel_id: str, thread_ts: str | None, *, skip_ts: str | None, bot_user_id: str | None
) -> list[ThreadMessage]:
    """The thread's earlier messages, from Slack; an empty list if there is none or Slack will not say."""
    if thread_ts is None or thread_ts == skip_ts:
        return []
    try:
        response = client.conversations_replies(channel=channel_id, ts=thread_ts, limit=THREAD_FETCH_LIMIT)
    except SlackApiError as exc:
        log.warning("conversations.replies failed: %s; answering from stored turns only", exc.response.get("error"))
        return []
    messages: list[dict[str, Any]] = response.get("messages") or []
    return [thread_message(message, bot_user_id) for message in messages]


class SlackHistory:
    """conversations.history as the agent's `history` reader."""

    def __init__(self, client: WebClient, *, bot_user_id: str | None) -> None:
        self.client = client
        self.bot_user_id = bot_user_id

    def __call__(self, channel_id: str, limit: int) -> list[ThreadMessage]:
        try:
            response = self.client.conversations_history(channel=channel_id, limit=limit)
        except SlackApiError as exc:
            error = exc.response.get("error")
            raise ToolError(f"Slack would not give the history of <#{channel_id}> ({error})") from exc
        messages: list[dict[str, Any]] = response.get("messages") or []
        return [thread_message(m, self.bot_user_id) for m in messages if m.get("text")]
