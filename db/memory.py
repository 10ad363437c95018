"""What Ember remembers: memory rows and their vectors, kept in step with the vector index.

- Storing: a memory row keeps its text (redacted here, as it is written) and the embedding of its
  question and text, computed once when it is stored by the embedder passed in (db never imports
  torch). Stored without an embedder, a row has no vector until `reembed_memories` gives it one.
- Every add, update and delete takes the `VectorIndex` (db.vector_index) the caller keeps, so the
  index stays in step: changes reach it when the transaction commits.
- Finding memories again (keyword and vector halves, fused) is db.search's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Protocol

import numpy as np
from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session

from db.redact import redact
from db.schema import Memory, utcnow
from db.vector_index import Placed, VectorIndex, encode_vector

__all__ = [
    "KEEP",
    "KINDS",
    "Embeds",
    "NewMemory",
    "Placed",
    "add_memories",
    "add_memory",
    "combine_vectors",
    "delete_memories",
    "delete_turn_memories",
    "delete_user_memories",
    "embedding_text",
    "embedding_texts",
    "memory_vectors",
    "reembed_memories",
    "update_memory_text",
]

KINDS = ("fact", "correction", "turn")
SQL_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


class Embeds(Protocol):
    """What db needs from an embedder (models.embeddings.Embedder), typed here so db never imports torch."""

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class NewMemory:
    """One memory to store in bulk with `add_memories`."""

    workspace_id: str
    channel_id: str
    channel_type: str
    user_id: str
    kind: str
    text: str
    question: str | None = None
    thread_ts: str | None = None
    source_ts: str | None = None
    turn_id: int | None = None


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # update_memory_text(question=KEEP): leave the stored question as it is


def embedding_text(text: str, question: str | None) -> str:
    """A memory as one text: the question it answered (if any) above what it says."""
    return f"{question}\n{text}" if question else text


def embedding_texts(text: str, question: str | None) -> tuple[str, ...]:
    """What is embedded for a memory: the question and its answer together (a later asker's words
    resemble the question), and, when there is a question, the answer alone (what it says, undiluted).
    The memory's vector is their normalised sum (`combine_vectors`). On the retrieval benchmark's
    paraphrased questions (bench/retrieval.py, 1,000 questions, exact search over 6,275 memories) the
    joint text alone found the right memory in the top 5 for 86.5%, the sum for 90.1%."""
    return (f"{question}\n{text}", text) if question else (text,)


def combine_vectors(vectors: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """One unit vector per memory from its `sizes[i]` consecutive rows of `vectors`."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    summed = np.add.reduceat(vectors, starts, axis=0) if len(sizes) else vectors[:0]
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.asarray(summed / np.maximum(norms, 1e-12), dtype=np.float32)


def memory_vectors(embedder: Embeds, memories: Sequence[tuple[str, str | None]]) -> np.ndarray:
    """The vectors of these (text, question) memories, one row each."""
    groups = [embedding_texts(text, question) for text, question in memories]
    if not groups:
        return np.empty((0, 0), dtype=np.float32)
    vectors = embedder.embed([part for group in groups for part in group])
    return combine_vectors(np.asarray(vectors, dtype=np.float32), [len(group) for group in groups])


def add_memory(
    session: Session,
    *,
    embedder: Embeds | None,
    workspace_id: str,
    channel_id: str,
    channel_type: str,
    user_id: str,
    kind: str,
    text: str,
    question: str | None = None,
    thread_ts: str | None = None,
    source_ts: str | None = None,
    turn_id: int | None = None,
    index: VectorIndex | None = None,
) -> Memory:
    """Store one memory, redacted. With an embedder it is embedded and its vector joins `index` when
    the transaction commits; without one it is stored with no vector (`reembed_memories` adds it)."""
    _check_kind(kind)
    item = _redacted(
        NewMemory(
            workspace_id=workspace_id,
            channel_id=channel_id,
            channel_type=channel_type,
            user_id=user_id,
            kind=kind,
            text=text,
            question=question,
            thread_ts=thread_ts,
            source_ts=source_ts,
            turn_id=turn_id,
        )
    )
    vector = None if embedder is None else memory_vectors(embedder, [(item.text, item.question)])[0]
    now = utcnow()
    memory = Memory(
        **_columns(item),
        embedding=None if vector is None else encode_vector(vector),
        embedding_model=None if embedder is None else embedder.name,
        created_at=now,
        updated_at=now,
    )
    session.add(memory)
    session.flush()
    if index is not None and vector is not None:
        index.add_on_commit(session, [memory.id], [item], vector[None, :])
    return memory


def add_memories(
    session: Session,
    *,
    embedder: Embeds,
    items: Sequence[NewMemory],
    vectors: np.ndarray | None = None,
    index: VectorIndex | None = None,
) -> list[int]:
    """Store many memories, redacted, in one batched INSERT; returns their ids in order.

    `vectors` lets a caller pass embeddings it already made with this same embedder (one row per
    item, of the texts as given); otherwise they are computed here, of the redacted texts."""
    if not items:
        return []
    for item in items:
        _check_kind(item.kind)
    stored = [_redacted(item) for item in items]
    if vectors is None:
        vectors = memory_vectors(embedder, [(item.text, item.question) for item in stored])
    if vectors.shape[0] != len(items):
        raise ValueError(f"{len(items)} items but {vectors.shape[0]} vectors")
    now = utcnow()
    rows = [
        {
            **_columns(item),
            "embedding": encode_vector(vec),
            "embedding_model": embedder.name,
            "created_at": now,
            "updated_at": now,
        }
        for item, vec in zip(stored, vectors, strict=True)
    ]
    ids = list(session.scalars(insert(Memory).returning(Memory.id, sort_by_parameter_order=True), rows))
    if index is not None:
        index.add_on_commit(session, ids, stored, vectors)
    return ids


def update_memory_text(
    session: Session,
    *,
    embedder: Embeds,
    memory_id: int,
    text: str,
    question: str | _Keep | None = KEEP,
    index: VectorIndex | None = None,
) -> Memory | None:
    """Change what a memory says (redacted, and re-embedded); None if there is no such memory."""
    memory = session.get(Memory, memory_id)
    if memory is None:
        return None
    if not isinstance(question, _Keep):
        memory.question = None if question is None else redact(question)
    memory.text = redact(text)
    vector = memory_vectors(embedder, [(memory.text, memory.question)])[0]
    memory.embedding = encode_vector(vector)
    memory.embedding_model = embedder.name
    memory.updated_at = utcnow()
    session.flush()
    if index is not None:
        index.remove_on_commit(session, [memory_id])
        index.add_on_commit(session, [memory_id], [memory], vector[None, :])
    return memory


def delete_memories(session: Session, *, memory_ids: Iterable[int], index: VectorIndex | None = None) -> int:
    """Delete these memories (row, keyword entry and vector); returns how many there were."""
    ids = sorted(set(memory_ids))
    deleted = 0
    for start in range(0, len(ids), SQL_CHUNK):
        chunk = ids[start : start + SQL_CHUNK]
        deleted += len(list(session.scalars(delete(Memory).where(Memory.id.in_(chunk)).returning(Memory.id))))
    if index is not None:
        index.remove_on_commit(session, ids)
    return deleted


def delete_user_memories(session: Session, *, workspace_id: str, user_id: str, index: VectorIndex | None = None) -> int:
    """Forget everything one person said in one workspace (a user's request to be forgotten)."""
    ids = session.scalars(select(Memory.id).where(Memory.workspace_id == workspace_id, Memory.user_id == user_id)).all()
    return delete_memories(session, memory_ids=ids, index=index)


def delete_turn_memories(session: Session, *, turn_ids: Iterable[int], index: VectorIndex | None = None) -> int:
    """Forget the memories made from these turns. Call it before deleting the turns themselves: the
    foreign key's cascade would remove the rows but could not tell the index."""
    wanted = sorted(set(turn_ids))
    ids: list[int] = []
    for start in range(0, len(wanted), SQL_CHUNK):
        chunk = wanted[start : start + SQL_CHUNK]
        ids.extend(session.scalars(select(Memory.id).where(Memory.turn_id.in_(chunk))))
    return delete_memories(session, memory_ids=ids, index=index)


def reembed_memories(
    session: Session, *, embedder: Embeds, batch_size: int = 256, index: VectorIndex | None = None
) -> int:
    """Embed memories stored without a vector, or with another model's (after a model change);
    returns how many were embedded."""
    stale = or_(Memory.embedding.is_(None), Memory.embedding_model.is_(None), Memory.embedding_model != embedder.name)
    ids = list(session.scalars(select(Memory.id).where(stale).order_by(Memory.id)))
    for start in range(0, len(ids), batch_size):
        rows = list(session.scalars(select(Memory).where(Memory.id.in_(ids[start : start + batch_size]))))
        vectors = memory_vectors(embedder, [(row.text, row.question) for row in rows])
        for row, vector in zip(rows, vectors, strict=True):
            row.embedding, row.embedding_model = encode_vector(vector), embedder.name
        session.flush()
        if index is not None:
            index.remove_on_commit(session, [row.id for row in rows])
            index.add_on_commit(session, [row.id for row in rows], rows, vectors)
    return len(ids)


def _redacted(item: NewMemory) -> NewMemory:
    return replace(item, text=redact(item.text), question=None if item.question is None else redact(item.question))


def _columns(item: NewMemory) -> dict[str, Any]:
    return {
        "workspace_id": item.workspace_id,
        "channel_id": item.channel_id,
        "channel_type": item.channel_type,
        "thread_ts": item.thread_ts,
        "user_id": item.user_id,
        "kind": item.kind,
        "text": item.text,
        "question": item.question,
        "source_ts": item.source_ts,
        "turn_id": item.turn_id,
    }


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"memory kind must be one of {', '.join(KINDS)}, not {kind!r}")
