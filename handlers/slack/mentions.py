"""`app_mention`: answer in the thread, starting one when the mention is top-level."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from handlers.slack.answering import answer_and_post, settle
from handlers.slack.asks import ask_from_event
from handlers.slack.corrections import take_correction
from handlers.slack.services import CONTEXT_KEY, Services
from handlers.slack.text import BARE_MENTION_HELP, is_from_person


def on_app_mention(body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if not is_from_person(event):
        return
    services: Services = context[CONTEXT_KEY]
    channel_type = services.channel_type(client, event["channel"])
    ask = ask_from_event(
        body, event, channel_type=channel_type, bot_user_id=context.bot_user_id, source="mention", in_thread=True
    )
    if not ask.text:
        client.chat_postMessage(channel=ask.channel_id, thread_ts=ask.reply_thread_ts, text=BARE_MENTION_HELP)
        settle(services, ask.event_id)
        return
    if take_correction(services, client, ask):
        return
    answer_and_post(services, client, ask, bot_user_id=context.bot_user_id)
