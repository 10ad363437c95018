"""Threads of the assistant pane (db.schema.AssistantThread), what each person is looking at beside
the agent view (db.schema.AgentContext), and the questions a team asks most."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.schema import AgentContext, AssistantThread, Turn, utcnow
from db.visibility import Audience, visible_to


@dataclass(frozen=True)
class ThreadInfo:
    workspace_id: str
    channel_id: str
    thread_ts: str
    user_id: str
    context_channel_id: str | None
    titled: bool


def thread_started(
    session: Session,
    *,
    workspace_id: str,
    channel_id: str,
    thread_ts: str,
    user_id: str,
    context_channel_id: str | None,
) -> None:
    """Record a new assistant thread (Slack may send the event again: the first record stays)."""
    if find_thread(session, channel_id=channel_id, thread_ts=thread_ts) is not None:
        set_context(session, channel_id=channel_id, thread_ts=thread_ts, context_channel_id=context_channel_id)
        return
    session.add(
        AssistantThread(
            workspace_id=workspace_id,
            channel_id=channel_id,
            thread_ts=thread_ts,
            user_id=user_id,
            context_channel_id=context_channel_id,
        )
    )
    session.flush()


def set_context(session: Session, *, channel_id: str, thread_ts: str, context_channel_id: str | None) -> bool:
    """The person moved to another channel with the pane open; False for a thread not recorded."""
    changed = session.execute(
        update(AssistantThread)
        .where(AssistantThread.channel_id == channel_id, AssistantThread.thread_ts == thread_ts)
        .values(context_channel_id=context_channel_id, updated_at=utcnow())
    )
    return bool(getattr(changed, "rowcount", 0))


def find_thread(session: Session, *, channel_id: str, thread_ts: str) -> ThreadInfo | None:
    row = session.scalars(
        select(AssistantThread).where(AssistantThread.channel_id == channel_id, AssistantThread.thread_ts == thread_ts)
    ).first()
    if row is None:
        return None
    return ThreadInfo(
        row.workspace_id, row.channel_id, row.thread_ts, row.user_id, row.context_channel_id, bool(row.titled)
    )


def take_title(session: Session, *, channel_id: str, thread_ts: str) -> bool:
    """True once per thread: for the first question, whose words become the thread's title."""
    taken = session.execute(
        update(AssistantThread)
        .where(
            AssistantThread.channel_id == channel_id,
            AssistantThread.thread_ts == thread_ts,
            AssistantThread.titled.is_(False),
        )
        .values(titled=True, updated_at=utcnow())
    )
    return getattr(taken, "rowcount", 0) == 1


def popular_questions(session: Session, *, audience: Audience, since: datetime, limit: int) -> list[str]:
    """The questions asked most since `since`, among those `audience` may see (public channels, and
    its own conversation): most asked first, then most recent."""
    key = func.lower(func.trim(Turn.question))
    rows = session.execute(
        select(func.min(Turn.question), func.count(Turn.id), func.max(Turn.asked_at))
        .where(visible_to(audience, Turn), Turn.asked_at >= since, Turn.source != "cli")
        .group_by(key)
        .order_by(func.count(Turn.id).desc(), func.max(Turn.asked_at).desc())
        .limit(limit)
    )
    return [str(question) for question, _count, _last in rows]


def set_viewing(session: Session, *, workspace_id: str, user_id: str, channel_id: str | None) -> None:
    """The channel `user_id` is looking at now (None: not a channel)."""
    where = (AgentContext.workspace_id == workspace_id, AgentContext.user_id == user_id)
    changed = session.execute(update(AgentContext).where(*where).values(channel_id=channel_id, updated_at=utcnow()))
    if getattr(changed, "rowcount", 0):
        return
    try:
        with session.begin_nested():
            session.add(AgentContext(workspace_id=workspace_id, user_id=user_id, channel_id=channel_id))
    except IntegrityError:  # a change that arrived at the same moment wrote the row first
        session.execute(update(AgentContext).where(*where).values(channel_id=channel_id, updated_at=utcnow()))


def viewing(session: Session, *, workspace_id: str, user_id: str) -> str | None:
    return session.scalar(
        select(AgentContext.channel_id).where(
            AgentContext.workspace_id == workspace_id, AgentContext.user_id == user_id
        )
    )
