"""Claims on Slack events: each event is answered once, by one process, even when a process dies.

Slack delivers an event at least once: what is not acknowledged within 3 s comes again about 1 and 5
minutes later, and more than one Ember process may share the database. So before an event is
acknowledged, a process claims it here, naming itself as the owner and keeping the envelope it needs
to answer it (`work`, cleared once the claim is settled).

- A claim is held while its owner beats its heartbeat (`heartbeat`, every few seconds).
- A redelivery of a held claim is acknowledged and dropped. A redelivery of a claim whose owner has
  stopped beating, that failed, or whose lease ran out takes it over at once.
- `take_orphans` hands a live process the claims of dead ones (at start-up and periodically), so an
  event is answered even when Slack never sends it again.
- After `MAX_ATTEMPTS` attempts a claim is given up (`Claim.GIVE_UP`): the caller tells the asker, once.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.schema import HandledEvent, Instance, utcnow

MAX_ATTEMPTS = 3
CLAIMED, DONE, FAILED, GIVEN_UP = "claimed", "done", "failed", "given_up"


class Claim(enum.Enum):
    TAKEN = "taken"  # this process answers it now
    HELD = "held"  # answered already, or being answered by a live process: acknowledge and drop
    GIVE_UP = "give up"  # too many attempts: tell the asker it could not be answered


@dataclass(frozen=True)
class Orphan:
    """A claim taken over from a process that died: answer it (TAKEN) or tell the asker (GIVE_UP)."""

    event_id: str
    work: dict[str, Any]
    replies: list[str]
    outcome: Claim


def heartbeat(session: Session, *, owner: str) -> None:
    """This process is alive; its claims stay its own."""
    now = utcnow()
    beat = session.execute(update(Instance).where(Instance.id == owner).values(heartbeat_at=now))
    if getattr(beat, "rowcount", 0) == 0:
        session.add(Instance(id=owner, started_at=now, heartbeat_at=now))
        session.flush()


def retire(session: Session, *, owner: str) -> None:
    """A clean stop: whatever this process still held is someone else's to take at once."""
    session.execute(delete(Instance).where(Instance.id == owner))


def _owner_gone(me: str | None, stale_after: timedelta) -> ColumnElement[bool]:
    live = select(Instance.id).where(Instance.heartbeat_at >= utcnow() - stale_after)
    gone = and_(HandledEvent.owner.is_not(None), HandledEvent.owner.not_in(live))
    return gone if me is None else and_(gone, HandledEvent.owner != me)


def claim_event(
    session: Session,
    *,
    event_id: str,
    lease: timedelta,
    owner: str | None = None,
    work: dict[str, Any] | None = None,
    stale_after: timedelta = timedelta(seconds=30),
) -> Claim:
    """Take on a Slack event unless it is answered or a live process is answering it."""
    now = utcnow()
    payload = json.dumps(work) if work is not None else None
    try:
        with session.begin_nested():
            session.add(
                HandledEvent(
                    event_id=event_id,
                    status=CLAIMED,
                    attempts=1,
                    lease_until=now + lease,
                    owner=owner,
                    work=payload,
                )
            )
        return Claim.TAKEN
    except IntegrityError:
        pass
    takeable = and_(
        HandledEvent.event_id == event_id,
        HandledEvent.status.in_((CLAIMED, FAILED)),
        or_(HandledEvent.status == FAILED, HandledEvent.lease_until < now, _owner_gone(owner, stale_after)),
    )
    values: dict[str, Any] = {"owner": owner, "updated_at": now}
    if payload is not None:
        values["work"] = payload
    taken = session.execute(
        update(HandledEvent)
        .where(takeable, HandledEvent.attempts < MAX_ATTEMPTS)
        .values(status=CLAIMED, attempts=HandledEvent.attempts + 1, lease_until=now + lease, **values)
    )
    if getattr(taken, "rowcount", 0) == 1:
        return Claim.TAKEN
    given_up = session.execute(
        update(HandledEvent).where(takeable).values(status=GIVEN_UP, work=None, owner=owner, updated_at=now)
    )
    return Claim.GIVE_UP if getattr(given_up, "rowcount", 0) == 1 else Claim.HELD


def take_orphans(
    session: Session, *, owner: str, lease: timedelta, stale_after: timedelta, limit: int = 50
) -> list[Orphan]:
    """Claims whose owner died before settling them, now `owner`'s, oldest first."""
    now = utcnow()
    rows = session.execute(
        select(
            HandledEvent.event_id, HandledEvent.owner, HandledEvent.attempts, HandledEvent.work, HandledEvent.replies
        )
        .where(
            HandledEvent.status == CLAIMED,
            HandledEvent.work.is_not(None),
            or_(_owner_gone(owner, stale_after), and_(HandledEvent.owner.is_(None), HandledEvent.lease_until < now)),
        )
        .order_by(HandledEvent.first_seen)
        .limit(limit)
    ).all()
    orphans = []
    for event_id, previous, attempts, work, replies in rows:
        exhausted = attempts >= MAX_ATTEMPTS
        same_owner = HandledEvent.owner.is_(None) if previous is None else HandledEvent.owner == previous
        taken = session.execute(
            update(HandledEvent)
            .where(
                HandledEvent.event_id == event_id,
                HandledEvent.status == CLAIMED,
                HandledEvent.attempts == attempts,
                same_owner,
            )
            .values(
                status=GIVEN_UP if exhausted else CLAIMED,
                attempts=attempts if exhausted else attempts + 1,
                owner=owner,
                lease_until=now + lease,
                work=None if exhausted else work,
                updated_at=now,
            )
        )
        if getattr(taken, "rowcount", 0) != 1:
            continue  # another live process took it first
        orphans.append(
            Orphan(
                event_id=event_id,
                work=json.loads(work or "{}"),
                replies=json.loads(replies) if replies else [],
                outcome=Claim.GIVE_UP if exhausted else Claim.TAKEN,
            )
        )
    return orphans


def note_reply(session: Session, *, event_id: str, ts: str) -> None:
    """A message was posted for this event: a takeover clears it before answering afresh."""
    replies = session.scalar(select(HandledEvent.replies).where(HandledEvent.event_id == event_id))
    posted = [*json.loads(replies), ts] if replies else [ts]
    session.execute(update(HandledEvent).where(HandledEvent.event_id == event_id).values(replies=json.dumps(posted)))


def posted_replies(session: Session, *, event_id: str) -> list[str]:
    replies = session.scalar(select(HandledEvent.replies).where(HandledEvent.event_id == event_id))
    return list(json.loads(replies)) if replies else []


def attempts(session: Session, *, event_id: str) -> int:
    return session.scalar(select(HandledEvent.attempts).where(HandledEvent.event_id == event_id)) or 0


def replies_of_claims(session: Session) -> set[str]:
    """Every message noted by a claim still being answered (a takeover leaves those alone)."""
    noted = select(HandledEvent.replies).where(HandledEvent.status == CLAIMED, HandledEvent.replies.is_not(None))
    rows = session.scalars(noted)
    return {ts for replies in rows for ts in json.loads(replies or "[]")}


def clear_replies(session: Session, *, event_id: str) -> None:
    session.execute(update(HandledEvent).where(HandledEvent.event_id == event_id).values(replies=None))


def finish_event(session: Session, *, event_id: str, ok: bool) -> None:
    """Settle a claim; what was kept to answer it again goes."""
    session.execute(
        update(HandledEvent)
        .where(HandledEvent.event_id == event_id)
        .values(status=DONE if ok else FAILED, work=None, replies=None, updated_at=utcnow())
    )


def event_status(session: Session, *, event_id: str) -> str | None:
    return session.scalar(select(HandledEvent.status).where(HandledEvent.event_id == event_id))


def prune_events(session: Session, *, older_than: timedelta) -> int:
    """Slack stops retrying after about 5 minutes; settled records far older than that are dead weight,
    and so are processes that stopped beating long ago."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(HandledEvent).where(HandledEvent.first_seen < cutoff, HandledEvent.status != CLAIMED)
    )
    session.execute(delete(Instance).where(Instance.heartbeat_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
