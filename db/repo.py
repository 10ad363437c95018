"""Repository functions: the only place that writes SQL for the rest of Ember. Keyword-only by design.

Text that people wrote is redacted here, as it is written (db.redact), so no caller can forget to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from db.digests import forget_digests
from db.memory import delete_turn_memories, delete_user_memories
from db.redact import redact
from db.schema import AgentContext, AssistantThread, ToolCall, TrainingRun, Turn, Vote, utcnow

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


def turn_by_question(session: Session, *, channel_id: str, question_ts: str) -> Turn | None:
    return session.scalars(select(Turn).where(Turn.channel_id == channel_id, Turn.question_ts == question_ts)).first()


def answered_by(session: Session, *, channel_id: str, answer_ts: Sequence[str]) -> set[str]:
    """Which of these messages are stored answers."""
    if not answer_ts:
        return set()
    found = session.scalars(select(Turn.answer_ts).where(Turn.channel_id == channel_id, Turn.answer_ts.in_(answer_ts)))
    return {ts for ts in found if ts}


def turn_by_answer(session: Session, *, channel_id: str, answer_ts: str) -> Turn | None:
    return session.scalars(select(Turn).where(Turn.channel_id == channel_id, Turn.answer_ts == answer_ts)).first()


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
    for table in (AssistantThread, AgentContext):  # where they talked with Ember, and what they were viewing
        session.execute(delete(table).where(table.workspace_id == workspace_id, table.user_id == user_id))
    return Forgotten(turns=len(turn_ids), memories=memories, votes=int(votes or 0), digests=digests)
