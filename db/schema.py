"""The tables. Alembic owns the schema in a database; this module is its typed picture."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Turn(Base):
    """One question and the answer Ember gave, with where it was asked and what answered it."""

    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    # "channel" (public), "group" (private), "im", "mpim", or "terminal" for `ember chat`/`ember ask`.
    channel_type: Mapped[str] = mapped_column(String(16))
    # The Slack thread this turn belongs to; None for a top-level DM conversation.
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # mention, dm, command, cli
    question: Mapped[str] = mapped_column(Text)
    question_ts: Mapped[str | None] = mapped_column(String(32))
    answer: Mapped[str] = mapped_column(Text)
    # Where the answer was posted, so later feedback (buttons, reactions) finds its turn.
    answer_ts: Mapped[str | None] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer)
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ix_turns_conversation", "workspace_id", "channel_id", "thread_ts", "id"),
        Index("ix_turns_answer", "channel_id", "answer_ts"),
    )


class HandledEvent(Base):
    """A Slack event Ember has taken on, so that Slack's retries never produce a second answer."""

    __tablename__ = "handled_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "claimed" while being answered, "done" once answered, "failed" if answering raised.
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # A claim older than this may be taken over by a retry: the worker that held it died.
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
