"""`message.im`: direct messages are questions. Ember answers each in its thread: a top-level message
opens one, as in Slack's agent view, where every message in the messages tab is its own conversation
with a title and an "is thinking…" status. "Catch me up on #channel" runs a catch-up instead; the
first question of a thread titles it (handlers.slack.assistant)."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from handlers.slack.answering import answer_and_post, settle
from handlers.slack.asks import ask_from_event
from handlers.slack.assistant import before_answering_dm
from handlers.slack.services import CONTEXT_KEY, Services
from handlers.slack.text import BARE_MENTION_HELP, is_from_person


def on_message(body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    # Channel messages reach Ember only through app_mention; here only DMs are questions.
    if event.get("channel_type") != "im" or not is_from_person(event):
        return
    services: Services = context[CONTEXT_KEY]
    ask = ask_from_event(body, event, channel_type="im", bot_user_id=context.bot_user_id, source="dm", in_thread=True)
    if not ask.text:
        client.chat_postMessage(channel=ask.channel_id, thread_ts=ask.reply_thread_ts, text=BARE_MENTION_HELP)
        settle(services, ask.event_id)
        return
    if before_answering_dm(services, client, ask):
        return
    answer_and_post(services, client, ask, bot_user_id=context.bot_user_id)
