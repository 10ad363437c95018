"""What the QA layer takes and gives: a question, where it was asked, what may be read for it, an answer.

Plain data with no Slack objects in it, so a terminal (`ember chat`) and every Slack surface build the
same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from db.repo import Conversation
from db.schema import utcnow


@dataclass(frozen=True)
class ThreadMessage:
    """A message already in the conversation on Slack's side (other people's replies included)."""

    ts: str
    user_id: str | None
    text: str
    from_ember: bool


@dataclass(frozen=True)
class Question:
    conversation: Conversation
    user_id: str
    text: str
    source: str
    question_ts: str | None = None
    thread: Sequence[ThreadMessage] = ()
    asked_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Answer:
    text: str
    model_version: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


# The conversation's earlier messages.
ReadThread = Callable[[], Sequence[ThreadMessage]]
# A channel's recent history: (channel_id, limit) -> messages, in any order.
ReadHistory = Callable[[str, int], Sequence[ThreadMessage]]
# Slack's channel_type of a channel of the asker's workspace ("channel" for public); anything else,
# or raising, for a channel it cannot find there.
ChannelType = Callable[[str], str]


@dataclass(frozen=True)
class Readers:
    """What the agent's tools may read from Slack for one question (none in a terminal)."""

    thread: ReadThread | None = None
    history: ReadHistory | None = None
    channel_type: ChannelType | None = None
