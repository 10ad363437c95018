"""A reply in Ember's thread that sets it straight ("No, the VPN host is vpn.acme.internal") is
remembered as a correction: recalled for the next similar question before any fine-tuning (when
EMBER_MEMORY is on), and trained on at night either way."""

from __future__ import annotations

import re

from slack_sdk import WebClient

from db.feedback import remember_correction
from db.repo import conversation_turns
from handlers.slack.answering import settle
from handlers.slack.asks import SlackAsk
from handlers.slack.services import Services

_CORRECTION = re.compile(
    r"^\s*(?:no\b|nope\b|actually\b|correction\b|wrong\b|incorrect\b|not quite\b"
    r"|that'?s (?:not right|wrong|incorrect))",
    re.IGNORECASE,
)


def looks_like_correction(text: str) -> bool:
    return bool(_CORRECTION.match(text))


def take_correction(services: Services, client: WebClient, ask: SlackAsk) -> bool:
    """Store `ask` as a correction of Ember's last answer in its thread; False if it is not one."""
    # Kept whether or not day-time recall is on: the nightly training learns from it either way.
    if ask.reply_thread_ts is None or not looks_like_correction(ask.text):
        return False
    with services.db.session() as session:
        earlier = conversation_turns(session, conversation=ask.conversation, limit=1)
    if not earlier:
        return False
    with services.db.session() as session:
        remember_correction(
            session,
            turn_id=earlier[-1].id,
            user_id=ask.user_id,
            text=ask.text,
            source_ts=ask.ts,
            embedder=services.embedder,
            index=services.index,
        )
    client.chat_postMessage(
        channel=ask.channel_id,
        thread_ts=ask.reply_thread_ts,
        text=f"Thanks <@{ask.user_id}>, "
        + (
            "I'll remember that for next time."
            if services.recall is not None
            else "I'll learn that in tonight's training."
        ),
    )
    settle(services, ask.event_id)
    return True
