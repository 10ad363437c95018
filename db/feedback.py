"""Feedback on answers: one vote per person per turn (the latest wins), and corrections remembered.

A correction is stored twice on purpose: on the vote (training data for the nightly fine-tune) and
as a `Memory` of kind "correction" (recalled for the next similar question, the same day).
`remember_correction` is the one writer of correction memories, for a suggested answer (the modal,
through `record_vote`) and a "No, ..." reply in Ember's thread alike. It embeds the memory when
given an embedder (searchable at once); without one the row waits for `db.memory.reembed_memories`.
Corrections are redacted as they are written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.memory import Embeds, add_memory, delete_memories
from db.redact import redact
from db.repo import turn_by_answer
from db.schema import Memory, Turn, Vote, utcnow

if TYPE_CHECKING:
    from db.vector_index import VectorIndex

VALUES = (1, -1)
SOURCES = ("button", "reaction", "modal")
CORRECTION = "correction"


def find_turn(
    session: Session,
    *,
    channel_id: str,
    message_ts: str,
    question_ts: str | None = None,
    thread_ts: str | None = None,
) -> Turn | None:
    """The turn whose answer is the message at (channel, ts).

    An answer too long for one message is split, and its feedback controls sit on the last part
    while the turn keeps the first part's ts. So the controls also carry the question's ts, and a
    message in the same thread (`thread_ts`, None for top-level) finds its turn by that.
    """
    turn = turn_by_answer(session, channel_id=channel_id, answer_ts=message_ts)
    if turn is not None or not question_ts:
        return turn
    same_thread = Turn.thread_ts.is_(None) if thread_ts is None else Turn.thread_ts == thread_ts
    return session.scalars(
        select(Turn)
        .where(Turn.channel_id == channel_id, Turn.question_ts == question_ts, same_thread)
        .order_by(Turn.id.desc())
    ).first()


def record_vote(
    session: Session,
    *,
    turn_id: int,
    user_id: str,
    value: int,
    source: str,
    correction: str | None = None,
    embedder: Embeds | None = None,
    index: VectorIndex | None = None,
) -> Vote:
    """Store `user_id`'s vote on a turn, replacing their earlier one; an earlier correction stays
    unless this vote brings a new one. A new correction is also remembered (`remember_correction`,
    with `embedder` and `index`)."""
    if value not in VALUES:
        raise ValueError(f"a vote is +1 or -1, not {value!r}")
    if source not in SOURCES:
        raise ValueError(f"a vote's source is one of {SOURCES}, not {source!r}")
    correction = redact(correction) if correction is not None else None
    vote = _existing(session, turn_id, user_id)
    if vote is None:
        vote = _insert(session, turn_id, user_id, value, source, correction)
    else:
        _update(vote, value, source, correction)
    if vote is None:  # the same person's concurrent vote was inserted first: this later one wins
        vote = _existing(session, turn_id, user_id)
        assert vote is not None, "the unique index said this vote exists"
        _update(vote, value, source, correction)
    session.flush()
    if correction is not None:
        remember_correction(session, turn_id=turn_id, user_id=user_id, text=correction, embedder=embedder, index=index)
    return vote


def withdraw_reaction_vote(session: Session, *, turn_id: int, user_id: str, value: int) -> bool:
    """Removing a :+1:/:-1: takes back the vote it cast, if that is still the person's vote: a later
    button click or a suggested answer is theirs to keep. True when a vote was removed."""
    vote = _existing(session, turn_id, user_id)
    if vote is None or vote.source != "reaction" or vote.value != value:
        return False
    session.delete(vote)
    session.flush()
    return True


def votes_for(session: Session, *, turn_id: int) -> list[Vote]:
    """Every person's current vote on a turn, oldest first."""
    return list(session.scalars(select(Vote).where(Vote.turn_id == turn_id).order_by(Vote.id)))


def remember_correction(
    session: Session,
    *,
    turn_id: int,
    user_id: str,
    text: str,
    source_ts: str | None = None,
    embedder: Embeds | None = None,
    index: VectorIndex | None = None,
) -> Memory:
    """Remember `text` as `user_id`'s correction of a turn, placed where the turn was asked, in place of
    their earlier correction of it (the latest wins). `source_ts` is the message a citation leads to:
    the correcting reply, or by default the answer it corrects."""
    turn = session.get(Turn, turn_id)
    if turn is None:
        raise ValueError(f"no turn {turn_id}")
    earlier = session.scalars(
        select(Memory.id).where(Memory.turn_id == turn_id, Memory.user_id == user_id, Memory.kind == CORRECTION)
    )
    delete_memories(session, memory_ids=list(earlier), index=index)
    return add_memory(
        session,
        embedder=embedder,
        index=index,
        workspace_id=turn.workspace_id,
        channel_id=turn.channel_id,
        channel_type=turn.channel_type,
        thread_ts=turn.thread_ts,
        user_id=user_id,
        kind=CORRECTION,
        text=text,
        question=turn.question,
        source_ts=source_ts or turn.answer_ts,
        turn_id=turn.id,
    )


def _existing(session: Session, turn_id: int, user_id: str) -> Vote | None:
    return session.scalars(select(Vote).where(Vote.turn_id == turn_id, Vote.user_id == user_id)).first()


def _insert(
    session: Session, turn_id: int, user_id: str, value: int, source: str, correction: str | None
) -> Vote | None:
    """Insert a first vote; None if the unique index refused it (the person voted meanwhile)."""
    now = utcnow()
    vote = Vote(
        turn_id=turn_id,
        user_id=user_id,
        value=value,
        source=source,
        correction=correction,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(vote)
    except IntegrityError:
        return None
    return vote


def _update(vote: Vote, value: int, source: str, correction: str | None) -> None:
    vote.value = value
    vote.source = source
    if correction is not None:
        vote.correction = correction
    vote.updated_at = utcnow()
