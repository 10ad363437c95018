"""`message.im`: direct messages are questions; Ember answers in the DM (in the thread if there is one)."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from handlers.answering import SlackAsk, answer_and_post
from handlers.services import CONTEXT_KEY, Services
from handlers.text import BARE_MENTION_HELP, is_from_person, strip_mention


def on_message(body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    # Channel messages reach Ember only through app_mention; here only DMs are questions.
    if event.get("channel_type") != "im" or not is_from_person(event):
        return
    services: Services = context[CONTEXT_KEY]
    text = strip_mention(event.get("text", ""), context.bot_user_id)
    thread_ts = event.get("thread_ts")
    if not text:
        client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts, text=BARE_MENTION_HELP)
        return
    ask = SlackAsk(
        workspace_id=body.get("team_id") or event.get("team") or "",
        channel_id=event["channel"],
        channel_type="im",
        user_id=event["user"],
        text=text,
        ts=event["ts"],
        reply_thread_ts=thread_ts,
        source="dm",
        event_id=body.get("event_id"),
    )
    answer_and_post(services, client, ask, bot_user_id=context.bot_user_id)
