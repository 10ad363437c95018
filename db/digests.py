"""Digest subscriptions, their runs and votes on them. Keyword-only, like every repository function.

A run is claimed before anything is read from Slack: inserting (subscription, window start) is the one
step that decides who posts a window, whichever process, restart or re-run gets there first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.schema import DigestRun, DigestSubscription, DigestVote, utcnow

CHANNEL, PERSONAL = "channel", "personal"
CLAIMED, POSTED, QUIET, FAILED = "claimed", "posted", "quiet", "failed"


@dataclass(frozen=True)
class Subscription:
    """A subscription as the scheduler and the commands see it (detached from any session)."""

    id: int
    workspace_id: str
    kind: str
    channel_id: str
    channel_type: str
    user_id: str
    cron: str
    timezone: str
    label: str
    created_at: datetime


def _detached(row: DigestSubscription) -> Subscription:
    return Subscription(
        id=row.id,
        workspace_id=row.workspace_id,
        kind=row.kind,
        channel_id=row.channel_id,
        channel_type=row.channel_type,
        user_id=row.user_id,
        cron=row.cron,
        timezone=row.timezone,
        label=row.label,
        created_at=_aware(row.created_at),
    )


def subscribe(
    session: Session,
    *,
    workspace_id: str,
    kind: str,
    channel_id: str,
    channel_type: str,
    user_id: str,
    cron: str,
    timezone: str,
    label: str,
) -> Subscription:
    row = DigestSubscription(
        workspace_id=workspace_id,
        kind=kind,
        channel_id=channel_id,
        channel_type=channel_type,
        user_id=user_id,
        cron=cron,
        timezone=timezone,
        label=label,
    )
    session.add(row)
    session.flush()
    return _detached(row)


def subscriptions(
    session: Session, *, workspace_id: str | None = None, channel_id: str | None = None, user_id: str | None = None
) -> list[Subscription]:
    """All subscriptions, or those of one workspace; with channel and user: that channel's digests and
    that person's recaps (what `/ember digest list` shows them)."""
    query = select(DigestSubscription).order_by(DigestSubscription.id)
    if workspace_id is not None:
        query = query.where(DigestSubscription.workspace_id == workspace_id)
    if channel_id is not None and user_id is not None:
        query = query.where(
            or_(
                (DigestSubscription.kind == CHANNEL) & (DigestSubscription.channel_id == channel_id),
                (DigestSubscription.kind == PERSONAL) & (DigestSubscription.user_id == user_id),
            )
        )
    return [_detached(row) for row in session.scalars(query)]


def owned_by(
    session: Session, *, workspace_id: str, user_id: str, subscription_id: int | None = None
) -> list[Subscription]:
    """What one person owns: the recaps they get and the channel digests they set up (or that one)."""
    query = select(DigestSubscription).where(
        DigestSubscription.workspace_id == workspace_id, DigestSubscription.user_id == user_id
    )
    if subscription_id is not None:
        query = query.where(DigestSubscription.id == subscription_id)
    return [_detached(row) for row in session.scalars(query.order_by(DigestSubscription.id))]


def subscription(session: Session, *, subscription_id: int) -> Subscription | None:
    row = session.get(DigestSubscription, subscription_id)
    return _detached(row) if row is not None else None


def reschedule(session: Session, *, subscription_id: int, cron: str, label: str) -> bool:
    """A new schedule for a subscription (the scheduler picks it up as for any change)."""
    changed = session.execute(
        update(DigestSubscription).where(DigestSubscription.id == subscription_id).values(cron=cron, label=label)
    )
    return getattr(changed, "rowcount", 0) == 1


def unsubscribe(session: Session, *, subscription_ids: Sequence[int]) -> int:
    """Delete subscriptions (their runs and votes go with them)."""
    if not subscription_ids:
        return 0
    ids = list(subscription_ids)
    runs = select(DigestRun.id).where(DigestRun.subscription_id.in_(ids))
    session.execute(delete(DigestVote).where(DigestVote.run_id.in_(runs)))
    session.execute(delete(DigestRun).where(DigestRun.subscription_id.in_(ids)))
    gone = session.execute(delete(DigestSubscription).where(DigestSubscription.id.in_(ids)))
    return int(getattr(gone, "rowcount", 0) or 0)


def claim_run(
    session: Session,
    *,
    subscription_id: int | None,
    workspace_id: str,
    window_start: datetime,
    window_end: datetime,
    owner: str,
    lease: timedelta = timedelta(hours=1),
) -> int | None:
    """Claim one window: the run's id, or None when it is posted already or being posted elsewhere.

    A failed run, or a claim abandoned for longer than `lease` (its process died), is taken over."""
    now = utcnow()
    # One spelling of each instant, so that the unique index compares like with like.
    window_start, window_end = window_start.astimezone(UTC), window_end.astimezone(UTC)
    try:
        with session.begin_nested():
            run = DigestRun(
                subscription_id=subscription_id,
                workspace_id=workspace_id,
                window_start=window_start,
                window_end=window_end,
                status=CLAIMED,
                owner=owner,
                claimed_at=now,
                messages=0,
            )
            session.add(run)
        return run.id
    except IntegrityError:
        pass
    taken = session.execute(
        update(DigestRun)
        .where(
            DigestRun.subscription_id == subscription_id,
            DigestRun.window_start == window_start,
            or_(DigestRun.status == FAILED, (DigestRun.status == CLAIMED) & (DigestRun.claimed_at < now - lease)),
        )
        .values(status=CLAIMED, owner=owner, claimed_at=now)
    )
    if not getattr(taken, "rowcount", 0):
        return None
    return session.scalar(
        select(DigestRun.id).where(DigestRun.subscription_id == subscription_id, DigestRun.window_start == window_start)
    )


def finish_run(
    session: Session,
    *,
    run_id: int,
    status: str,
    messages: int = 0,
    channel_id: str | None = None,
    message_ts: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.execute(
        update(DigestRun)
        .where(DigestRun.id == run_id)
        .values(
            status=status,
            messages=messages,
            channel_id=channel_id,
            message_ts=message_ts,
            detail=json.dumps(detail) if detail is not None else None,
            finished_at=utcnow(),
        )
    )


@dataclass(frozen=True)
class RunRecord:
    id: int
    subscription_id: int | None
    window_start: datetime
    window_end: datetime
    status: str
    channel_id: str | None
    message_ts: str | None
    messages: int


def runs(session: Session, *, subscription_id: int | None = None) -> list[RunRecord]:
    query = select(DigestRun).order_by(DigestRun.window_start, DigestRun.id)
    if subscription_id is not None:
        query = query.where(DigestRun.subscription_id == subscription_id)
    return [
        RunRecord(
            id=row.id,
            subscription_id=row.subscription_id,
            window_start=_aware(row.window_start),
            window_end=_aware(row.window_end),
            status=row.status,
            channel_id=row.channel_id,
            message_ts=row.message_ts,
            messages=row.messages,
        )
        for row in session.scalars(query)
    ]


def last_posted_end(session: Session, *, workspace_id: str, channel_id: str) -> datetime | None:
    """Where the last digest of this channel ended (for `/ember digest now since-last`)."""
    query = (
        select(DigestRun.window_end)
        .join(DigestSubscription, DigestSubscription.id == DigestRun.subscription_id)
        .where(
            DigestSubscription.workspace_id == workspace_id,
            DigestSubscription.kind == CHANNEL,
            DigestSubscription.channel_id == channel_id,
            DigestRun.status.in_((POSTED, QUIET)),
        )
        .order_by(DigestRun.window_end.desc())
        .limit(1)
    )
    found = session.scalar(query)
    return _aware(found) if found is not None else None


def run_for_message(session: Session, *, channel_id: str, message_ts: str) -> int | None:
    return session.scalar(
        select(DigestRun.id).where(DigestRun.channel_id == channel_id, DigestRun.message_ts == message_ts)
    )


def record_digest_vote(session: Session, *, run_id: int, user_id: str, value: int) -> None:
    """One vote per person per digest; a later vote replaces the earlier one."""
    existing = session.scalar(select(DigestVote).where(DigestVote.run_id == run_id, DigestVote.user_id == user_id))
    if existing is None:
        session.add(DigestVote(run_id=run_id, user_id=user_id, value=value))
    else:
        existing.value = value
        existing.updated_at = utcnow()


def digest_votes(session: Session, *, run_id: int) -> dict[str, int]:
    return {vote.user_id: vote.value for vote in session.scalars(select(DigestVote).where(DigestVote.run_id == run_id))}


def forget_digests(session: Session, *, workspace_id: str, user_id: str) -> int:
    """A person's recaps and digest votes (for `/ember forget`); channel digests they set up stay, as
    they belong to the channel. Returns how many rows went."""
    personal = select(DigestSubscription.id).where(
        DigestSubscription.workspace_id == workspace_id,
        DigestSubscription.kind == PERSONAL,
        DigestSubscription.user_id == user_id,
    )
    gone = unsubscribe(session, subscription_ids=list(session.scalars(personal)))
    workspace_runs = select(DigestRun.id).where(DigestRun.workspace_id == workspace_id)
    votes = session.execute(
        delete(DigestVote).where(DigestVote.user_id == user_id, DigestVote.run_id.in_(workspace_runs))
    )
    return gone + int(getattr(votes, "rowcount", 0) or 0)


def _aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
