"""Plain text helpers for Slack messages: mentions, usage, and which events are people asking."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SLACK_TEXT_LIMIT = 40_000
# Subtypes that are still a person talking; everything else (edits, deletes, joins, bots) is not.
HUMAN_SUBTYPES = {None, "file_share", "thread_broadcast"}

USAGE = (
    "*Ember* answers questions with the team's own model.\n"
    "• `/ember ask <question>`: ask a question here\n"
    "• `/ember remember <fact>`: pin a fact I should know in this channel\n"
    "• `/ember forget`: delete everything I stored of you (asks first)\n"
    "• `/ember digest daily [HH:MM]`: a digest of this channel on a schedule (`/ember digest help` for more)\n"
    "• `/ember summarize <message link>`: sum up a thread\n"
    "• `/ember status`: the model I answer with and what my last training run did\n"
    "• `/ember help`: show this help\n"
    "• Mention me (`@Ember <question>`) in a channel, or send me a DM; I answer in the thread."
)
BARE_MENTION_HELP = (
    "Hi! Ask me something: mention me with your question, e.g. `@Ember how do I reset the VPN?`, "
    "or use `/ember help` to see what I can do."
)

_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """Remove the mention of Ember (or, without its id, a leading mention) from a message."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    else:
        text = _MENTION.sub(" ", text, count=1)
    return re.sub(r"[ \t]+", " ", text).strip()


def is_from_person(event: Mapping[str, Any]) -> bool:
    """False for bots (Ember included), edits, deletions and other non-message subtypes."""
    return not event.get("bot_id") and event.get("subtype") in HUMAN_SUBTYPES and bool(event.get("user"))


def clip_for_slack(text: str) -> str:
    if len(text) <= SLACK_TEXT_LIMIT:
        return text
    return text[: SLACK_TEXT_LIMIT - 20] + "\n…(cut to fit)"
