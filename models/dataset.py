"""The nightly training set, built from the team's feedback.

- Desirable: answers voted up, and corrections (a vote's suggested answer, or a "No, it's ..." reply
  remembered as a correction), each as the answer to the question it corrects.
- Undesirable: answers voted down.

Every item passes `db.visibility.shareable_for_training` (private channels and DMs stay out unless the
team opts in), is redacted again (redaction rules may have grown since it was stored), and is
deduplicated: the same answer to the same question counts once, with its votes added up; where they
cancel out, it is left out. A deterministic slice of the questions (by hash, so it never moves
between runs) is held out for the eval gate.

No torch here: the job builds the set before it loads a model, and skips the run if it is too small.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.redact import redact
from db.schema import Memory, Turn, Vote
from db.visibility import shareable_for_training

MIN_EXAMPLES = 20
HOLDOUT_FRACTION = 0.2
# Nightly runs retrain from the base on everything, so cap the set (newest feedback first).
MAX_EXAMPLES = 5000

# A thread reply that corrects Ember starts like this ("No, the VPN host is ..."); as a training
# answer the lead-in would teach the model to open answers with "No,".
_CORRECTION_LEAD = re.compile(
    r"^\s*(?:<@[A-Z0-9]+>\s*)*"
    r"(?:(?:no|nope|actually|correction|wrong|incorrect|not quite"
    r"|that'?s (?:not right|wrong|incorrect))\b[\s,:;.!-]*)*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Example:
    """One labelled answer: `completion` is (un)desirable as the reply to `question`."""

    question: str
    completion: str
    desirable: bool
    source: str  # upvote, downvote, correction
    system_prompt: str = ""

    def prompt(self) -> list[dict[str, str]]:
        """The messages the bot would send for this question (retrieval and history aside)."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*messages, {"role": "user", "content": self.question}]


@dataclass(frozen=True)
class TrainingSet:
    train: list[Example]
    held_out: list[Example]
    # How much feedback was left out, and why: useful in a run's record when a set comes out small.
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def examples(self) -> list[Example]:
        return [*self.train, *self.held_out]

    @property
    def desirable(self) -> int:
        return sum(example.desirable for example in self.examples)

    @property
    def undesirable(self) -> int:
        return len(self.examples) - self.desirable

    def shortfall(self, min_examples: int) -> str | None:
        """Why this set is too small to train and judge on, or None when it is big enough."""
        if len(self.examples) < min_examples:
            return f"{len(self.examples)} examples, fewer than the minimum of {min_examples}"
        if not any(example.desirable for example in self.train):
            return "no desirable examples to learn from"
        if not any(example.desirable for example in self.held_out):
            return "no desirable examples held out to judge a candidate by"
        return None

    def counts(self) -> dict[str, object]:
        return {
            "examples": len(self.examples),
            "desirable": self.desirable,
            "undesirable": self.undesirable,
            "train": len(self.train),
            "held_out": len(self.held_out),
            "left_out": dict(self.left_out),
            # What the examples came from (upvote, downvote, correction), for the learning report.
            "sources": dict(Counter(example.source for example in self.examples)),
        }


@dataclass
class _Tally:
    """Feedback on one (question, answer) pair, summed over turns and people."""

    question: str
    completion: str
    score: int = 0
    corrected: bool = False
    latest: datetime | None = None

    def add(self, *, score: int, corrected: bool, at: datetime | None) -> None:
        self.score += score
        self.corrected = self.corrected or corrected
        if at is not None and (self.latest is None or _aware(at) > _aware(self.latest)):
            self.latest = at


def build(
    session: Session,
    *,
    system_prompt: str,
    include_private: bool = False,
    holdout_fraction: float = HOLDOUT_FRACTION,
    max_examples: int = MAX_EXAMPLES,
) -> TrainingSet:
    """Read every vote and correction into a deduplicated, redacted, split training set."""
    tallies: dict[tuple[str, str], _Tally] = {}
    left_out = {"private": 0, "empty": 0, "conflicting": 0, "over_cap": 0}
    for turn, votes in _voted_turns(session):
        if not shareable_for_training(turn, include_private=include_private):
            left_out["private"] += 1
            continue
        score = sum(vote.value for vote in votes)
        if score:
            _count(tallies, left_out, turn.question, turn.answer, score=score, corrected=False, at=_last(votes))
        for vote in votes:
            if vote.correction:
                _count(
                    tallies, left_out, turn.question, _as_answer(vote.correction), corrected=True, at=vote.updated_at
                )
    for memory in _corrections(session):
        if not shareable_for_training(memory, include_private=include_private):
            left_out["private"] += 1
            continue
        assert memory.question is not None  # _corrections selects only corrections with a question
        _count(tallies, left_out, memory.question, _as_answer(memory.text), corrected=True, at=memory.updated_at)
    examples = _label(tallies.values(), system_prompt, left_out)
    if len(examples) > max_examples:
        left_out["over_cap"] = len(examples) - max_examples
        examples = examples[:max_examples]
    train, held_out = split(examples, holdout_fraction)
    return TrainingSet(train=train, held_out=held_out, left_out={k: v for k, v in left_out.items() if v})


def split(examples: Sequence[Example], holdout_fraction: float) -> tuple[list[Example], list[Example]]:
    """Hold out whole questions, chosen by hash, so a question's answers never straddle the slices and
    a question stays on its side from one night to the next. If the hash holds out no desirable (or no
    undesirable) answer, the question with the smallest hash is moved over, so the gate can judge."""
    held = {_question_key(e.question) for e in examples if held_out(e.question, holdout_fraction)}
    for desirable in (True, False):
        keys = sorted({_question_key(e.question) for e in examples if e.desirable is desirable}, key=_hash)
        if len(keys) >= 2 and not held.intersection(keys):
            held.add(keys[0])
        # Keep something to learn from: never hold out every question of a kind.
        if keys and held.issuperset(keys) and len(keys) >= 2:
            held.discard(keys[-1])
    train = [e for e in examples if _question_key(e.question) not in held]
    return train, [e for e in examples if _question_key(e.question) in held]


def held_out(question: str, holdout_fraction: float = HOLDOUT_FRACTION) -> bool:
    """Whether the hash puts this question in the eval slice (tests use it to plant data on a side)."""
    return _hash(_question_key(question)) < holdout_fraction


def _voted_turns(session: Session) -> Iterable[tuple[Turn, list[Vote]]]:
    rows = session.execute(select(Turn, Vote).join(Vote, Vote.turn_id == Turn.id).order_by(Turn.id, Vote.id))
    grouped: dict[int, tuple[Turn, list[Vote]]] = {}
    for turn, vote in rows:
        grouped.setdefault(turn.id, (turn, []))[1].append(vote)
    return grouped.values()


def _corrections(session: Session) -> Sequence[Memory]:
    query = select(Memory).where(Memory.kind == "correction", Memory.question.is_not(None)).order_by(Memory.id)
    return session.scalars(query).all()


def _count(
    tallies: dict[tuple[str, str], _Tally],
    left_out: dict[str, int],
    question: str,
    completion: str,
    *,
    score: int = 0,
    corrected: bool,
    at: datetime | None,
) -> None:
    question, completion = redact(question).strip(), redact(completion).strip()
    if not question or not completion:
        left_out["empty"] += 1
        return
    key = (_question_key(question), _question_key(completion))
    tallies.setdefault(key, _Tally(question, completion)).add(score=score, corrected=corrected, at=at)


def _label(tallies: Iterable[_Tally], system_prompt: str, left_out: dict[str, int]) -> list[Example]:
    """Newest feedback first (it survives the cap), corrections counting as desirable whatever the votes."""
    examples: list[tuple[datetime | None, Example]] = []
    for tally in tallies:
        if not tally.corrected and tally.score == 0:
            left_out["conflicting"] += 1
            continue
        desirable = tally.corrected or tally.score > 0
        source = "correction" if tally.corrected else ("upvote" if desirable else "downvote")
        examples.append((tally.latest, Example(tally.question, tally.completion, desirable, source, system_prompt)))
    examples.sort(key=lambda pair: (_sort_time(pair[0]), pair[1].question, pair[1].completion), reverse=True)
    return [example for _, example in examples]


def _as_answer(correction: str) -> str:
    """A correction as an answer: without the "No, ..." lead-in and any @-mention, capitalised."""
    text = _CORRECTION_LEAD.sub("", correction, count=1).strip()
    return text[:1].upper() + text[1:]


def _question_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _hash(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _last(votes: Sequence[Vote]) -> datetime | None:
    times = [vote.updated_at for vote in votes if vote.updated_at is not None]
    return max(times, key=_aware) if times else None


def _aware(moment: datetime) -> float:
    # SQLite hands back naive datetimes for timezone columns; they were written in UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _sort_time(moment: datetime | None) -> float:
    return _aware(moment) if moment is not None else 0.0
