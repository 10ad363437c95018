"""A reply in Ember's thread that sets it straight ("No, the VPN host is vpn.acme.internal") is
remembered as a correction, and recalled for the next similar question before any fine-tuning."""

from __future__ import annotations

import logging
import re

from slack_sdk import WebClient

from db.repo import Conversation, conversation_turns
from handlers.answering import SlackAsk, claim_once
from handlers.services import Services

log = logging.getLogger(__name__)

_CORRECTION = re.compile(
    r"^\s*(?:no\b|nope\b|actually\b|correction\b|wrong\b|incorrect\b|not quite\b"
    r"|that'?s (?:not right|wrong|incorrect))",
    re.IGNORECASE,
)


def looks_like_correction(text: str) -> bool:
    return bool(_CORRECTION.match(text))


def take_correction(services: Services, client: WebClient, ask: SlackAsk) -> bool:
    """Store `ask` as a correction of Ember's last answer in its thread; False if it is not one."""
    if services.recall is None or ask.reply_thread_ts is None or not looks_like_correction(ask.text):
        return False
    conversation = Conversation(ask.workspace_id, ask.channel_id, ask.channel_type, ask.reply_thread_ts)
    with services.db.session() as session:
        earlier = conversation_turns(session, conversation=conversation, limit=1)
    if not earlier:
        return False
    if ask.event_id and not claim_once(services, ask.event_id):
        return True
    services.recall.correct(
        conversation=conversation,
        user_id=ask.user_id,
        text=ask.text,
        question=earlier[-1].question,
        source_ts=ask.ts,
        turn_id=earlier[-1].id,
    )
    client.chat_postMessage(
        channel=ask.channel_id,
        thread_ts=ask.reply_thread_ts,
        text=f"Thanks <@{ask.user_id}>, I'll remember that for next time.",
    )
    return True
