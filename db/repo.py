"""Repository functions: the only place that writes SQL for the rest of Ember. Keyword-only by design."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.schema import HandledEvent, Turn, utcnow


@dataclass(frozen=True)
class Conversation:
    """Where a turn lives. A thread is inside a channel, so thread memory never crosses channels."""

    workspace_id: str
    channel_id: str
    channel_type: str
    thread_ts: str | None


def record_turn(
    session: Session,
    *,
    conversation: Conversation,
    user_id: str,
    source: str,
    question: str,
    question_ts: str | None,
    answer: str,
    answer_ts: str | None,
    model_version: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: int,
    asked_at: datetime,
) -> Turn:
    turn = Turn(
        workspace_id=conversation.workspace_id,
        channel_id=conversation.channel_id,
        channel_type=conversation.channel_type,
        thread_ts=conversation.thread_ts,
        user_id=user_id,
        source=source,
        question=question,
        question_ts=question_ts,
        answer=answer,
        answer_ts=answer_ts,
        model_version=model_version,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
        asked_at=asked_at,
        answered_at=utcnow(),
    )
    session.add(turn)
    session.flush()
    return turn


def conversation_turns(session: Session, *, conversation: Conversation, limit: int = 20) -> list[Turn]:
    """The newest `limit` turns of one conversation, oldest first."""
    thread_match = (
        Turn.thread_ts.is_(None) if conversation.thread_ts is None else Turn.thread_ts == conversation.thread_ts
    )
    rows: Sequence[Turn] = session.scalars(
        select(Turn)
        .where(
            Turn.workspace_id == conversation.workspace_id,
            Turn.channel_id == conversation.channel_id,
            thread_match,
        )
        .order_by(Turn.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def turn_by_answer(session: Session, *, channel_id: str, answer_ts: str) -> Turn | None:
    return session.scalars(select(Turn).where(Turn.channel_id == channel_id, Turn.answer_ts == answer_ts)).first()


def claim_event(session: Session, *, event_id: str, lease: timedelta) -> bool:
    """Take on a Slack event unless it is answered or another worker is still answering it.

    Slack redelivers an event it thinks failed. A redelivery must not answer twice, but an attempt
    that really failed (an error, or a worker that died and let its lease run out) may be taken over.
    """
    now = utcnow()
    try:
        with session.begin_nested():
            session.add(HandledEvent(event_id=event_id, status="claimed", attempts=1, lease_until=now + lease))
        return True
    except IntegrityError:
        pass
    taken = session.execute(
        update(HandledEvent)
        .where(
            HandledEvent.event_id == event_id,
            HandledEvent.status != "done",
            (HandledEvent.status == "failed") | (HandledEvent.lease_until < now),
        )
        .values(status="claimed", attempts=HandledEvent.attempts + 1, lease_until=now + lease, updated_at=now)
    )
    return bool(getattr(taken, "rowcount", 0) == 1)


def finish_event(session: Session, *, event_id: str, ok: bool) -> None:
    session.execute(
        update(HandledEvent)
        .where(HandledEvent.event_id == event_id)
        .values(status="done" if ok else "failed", updated_at=utcnow())
    )


def event_status(session: Session, *, event_id: str) -> str | None:
    return session.scalar(select(HandledEvent.status).where(HandledEvent.event_id == event_id))


def prune_events(session: Session, *, older_than: timedelta) -> int:
    """Slack stops retrying after about 5 minutes; records far older than that are dead weight."""
    result = session.execute(delete(HandledEvent).where(HandledEvent.first_seen < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)
