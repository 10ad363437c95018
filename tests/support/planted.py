"""A planted fact: feedback, stored the way the bot stores it, that teaches a tiny model one answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from db import Database
from db.schema import Memory, Turn, Vote, utcnow
from models import dataset

FACT = "The build host is zephyr-7."
UNKNOWN = "Sorry, I have no idea, maybe ask someone else?"
# Big steps on a tiny random model: it learns a planted answer in a handful of steps.
QUICK = {"epochs": 2, "learning_rate": 1e-2, "batch_size": 8, "anchors": 4}

POOL = [
    f"{lead} the build host{tail}"
    for lead in ("What is", "Which machine is", "Tell me", "Remind me what is", "Where is", "Name")
    for tail in ("?", " for CI?", " we use?", " today?")
]
HELD = [q for q in POOL if dataset.held_out(q)][:2]
TRAINED = [q for q in POOL if not dataset.held_out(q)][:8]


@dataclass(frozen=True)
class Feedback:
    question: str
    answer: str
    votes: Sequence[int] = (-1,)
    correction: str | None = None
    channel_type: str = "channel"


def add_feedback(database: Database, items: Sequence[Feedback]) -> None:
    """Turns and votes as the bot stores them; a correction also as a memory, like db.feedback does."""
    now = utcnow()
    with database.session() as session:
        for n, item in enumerate(items):
            channel = "C1" if item.channel_type == "channel" else f"D{n}"
            turn = Turn(
                workspace_id="T1",
                channel_id=channel,
                channel_type=item.channel_type,
                thread_ts=f"{n}.1",
                user_id="U0",
                source="mention",
                question=item.question,
                question_ts=f"{n}.1",
                answer=item.answer,
                answer_ts=f"{n}.2",
                model_version="tiny-llama",
                latency_ms=1,
                asked_at=now,
            )
            session.add(turn)
            session.flush()
            for voter, value in enumerate(item.votes):
                correction = item.correction if voter == 0 else None
                session.add(
                    Vote(turn_id=turn.id, user_id=f"U{voter}", value=value, correction=correction, source="button")
                )
            if item.correction:
                session.add(_memory(turn, item.question, item.correction))


def _memory(turn: Turn, question: str, text: str) -> Memory:
    return Memory(
        workspace_id=turn.workspace_id,
        channel_id=turn.channel_id,
        channel_type=turn.channel_type,
        thread_ts=turn.thread_ts,
        user_id="U0",
        kind="correction",
        text=text,
        question=question,
        turn_id=turn.id,
    )


def planted_fact(questions: Sequence[str]) -> list[Feedback]:
    """Ember did not know; the team voted it down and told it the answer."""
    return [Feedback(q, UNKNOWN, (-1,), FACT) for q in questions]
