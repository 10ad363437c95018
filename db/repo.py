"""Repository functions: the only place that writes SQL for the rest of Ember. Keyword-only by design.

Text that people wrote is redacted here, as it is written (db.redact), so no caller can forget to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.digests import forget_digests
from db.memory import delete_turn_memories, delete_user_memories
from db.redact import redact
from db.schema import HandledEvent, ToolCall, TrainingRun, Turn, Vote, utcnow

if TYPE_CHECKING:
    from db.vector_index import VectorIndex


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
        question=redact(question),
        question_ts=question_ts,
        answer=redact(answer),
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


class ToolCallLike(Protocol):
    """One tool the agent ran (handlers.qa.agent.ToolCallRecord)."""

    @property
    def step(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def arguments(self) -> dict[str, Any]: ...

    @property
    def result(self) -> str: ...


def store_tool_calls(session: Session, *, turn_id: int, calls: Sequence[ToolCallLike]) -> list[ToolCall]:
    rows = [
        ToolCall(
            turn_id=turn_id,
            step=call.step,
            name=call.name[:64],  # the column's width; a model may invent a long name
            arguments=json.dumps(call.arguments, ensure_ascii=False, sort_keys=True),
            result=call.result,
        )
        for call in calls
    ]
    session.add_all(rows)
    session.flush()
    return rows


def latest_training_run(session: Session) -> TrainingRun | None:
    return session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1)).first()


@dataclass(frozen=True)
class Forgotten:
    turns: int
    memories: int
    votes: int
    digests: int = 0  # personal recaps and votes on digests


def forget_user(session: Session, *, workspace_id: str, user_id: str, index: VectorIndex | None = None) -> Forgotten:
    """Delete everything stored of one person in one workspace: turns, votes, memories, vectors."""
    workspace_turns = select(Turn.id).where(Turn.workspace_id == workspace_id)
    turn_ids = list(session.scalars(workspace_turns.where(Turn.user_id == user_id)))
    votes_gone = or_(Vote.user_id == user_id, Vote.turn_id.in_(turn_ids))
    votes = session.scalar(select(func.count(Vote.id)).where(Vote.turn_id.in_(workspace_turns), votes_gone))
    memories = delete_turn_memories(session, turn_ids=turn_ids, index=index)
    memories += delete_user_memories(session, workspace_id=workspace_id, user_id=user_id, index=index)
    session.execute(delete(Vote).where(Vote.turn_id.in_(workspace_turns), votes_gone))
    # Tool calls on the person's turns go with them (ON DELETE CASCADE).
    session.execute(delete(Turn).where(Turn.id.in_(turn_ids)))
    digests = forget_digests(session, workspace_id=workspace_id, user_id=user_id)
    return Forgotten(turns=len(turn_ids), memories=memories, votes=int(votes or 0), digests=digests)
