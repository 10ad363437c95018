"""`app_mention`: answer in the thread, starting one when the mention is top-level."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from handlers.answering import SlackAsk, answer_and_post
from handlers.corrections import take_correction
from handlers.services import CONTEXT_KEY, Services
from handlers.text import BARE_MENTION_HELP, is_from_person, strip_mention


def on_app_mention(body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if not is_from_person(event):
        return
    services: Services = context[CONTEXT_KEY]
    channel = event["channel"]
    thread_ts = event.get("thread_ts") or event["ts"]
    text = strip_mention(event.get("text", ""), context.bot_user_id)
    if not text:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=BARE_MENTION_HELP)
        return
    ask = SlackAsk(
        workspace_id=body.get("team_id") or event.get("team") or "",
        channel_id=channel,
        channel_type=services.channel_type(client, channel),
        user_id=event["user"],
        text=text,
        ts=event["ts"],
        reply_thread_ts=thread_ts,
        source="mention",
        event_id=body.get("event_id"),
    )
    if take_correction(services, client, ask):
        return
    answer_and_post(services, client, ask, bot_user_id=context.bot_user_id)
