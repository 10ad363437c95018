"""What Ember remembers, and finding it again without ever showing it where it may not be seen.

- Storing: a memory row keeps its text and the embedding of its question and text, computed once
  when it is stored (by the embedder passed in; db never imports torch).
- Keyword half: SQLite FTS5 (`memories_fts`, kept in step by triggers) ranked by bm25; other
  databases fall back to LIKE.
- Vector half: a `VectorIndex` the caller builds once from the stored embeddings and passes to every
  add, update, delete and search so it stays in step. Without one, the visible rows' vectors are read
  from SQL (correct, but slow past a few hundred thousand memories).
- The two ranked lists are fused with reciprocal rank fusion.
- Privacy (db.visibility): every SQL read carries `visible_to`. The index keeps one partition per
  visibility scope (a workspace's public memories; each private conversation's own), so a query only
  scans what its audience may see, and every hit is read back through `visible_to` before it is returned.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
from sqlalchemy import ColumnElement, Select, case, column, delete, event, func, insert, or_, select, table, text
from sqlalchemy.orm import Session

from db.schema import Memory, utcnow
from db.visibility import Audience, can_see, is_public, visible_to

KINDS = ("fact", "correction", "turn")
# Standard RRF constant: damps the difference between rank 1 and rank 2 of either list.
RRF_K = 60
# A keyword rank counts a quarter of a vector rank: a reworded question shares few words with the memory
# that answers it (so keyword lists are noisier), while a query naming an exact identifier (a host, a
# ticket) still lifts that memory among the vector half's candidates. On bench/retrieval.py at 20k
# memories, recall@5 was 0.852 with the vector half alone, 0.850 at 0.25 and 0.844 at 0.5.
KEYWORD_WEIGHT = 0.25
# How many candidates each half contributes to the fusion.
CANDIDATES = 50
VECTOR_DTYPE = np.dtype("<f4")  # the storage format of memories.embedding (see models.embeddings.to_bytes)
SQL_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


class Embeds(Protocol):
    """What db needs from an embedder (models.embeddings.Embedder), typed here so db never imports torch."""

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class Placed(Protocol):
    """Where a memory was said and what it is: enough to file its vector in the right partition."""

    @property
    def workspace_id(self) -> str: ...

    @property
    def channel_id(self) -> str: ...

    @property
    def channel_type(self) -> str: ...

    @property
    def kind(self) -> str: ...


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


@dataclass(frozen=True)
class MemoryHit:
    """One search result. `score` is the fused (RRF) score, higher is better; `similarity` the cosine
    between query and memory, for callers that want a relevance floor."""

    memory_id: int
    kind: str
    text: str
    question: str | None
    channel_id: str
    source_ts: str | None
    score: float
    similarity: float | None = None


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


# --- storing -------------------------------------------------------------------------------------


def add_memory(
    session: Session,
    *,
    embedder: Embeds,
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
    """Store one memory with its embedding; its vector joins `index` when the transaction commits."""
    item = NewMemory(
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
    _check_kind(kind)
    vector = memory_vectors(embedder, [(text, question)])[0]
    now = utcnow()
    memory = Memory(
        **_columns(item),
        embedding=_encode(vector),
        embedding_model=embedder.name,
        created_at=now,
        updated_at=now,
    )
    session.add(memory)
    session.flush()
    if index is not None:
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
    """Store many memories in one batched INSERT; returns their ids in order.

    `vectors` lets a caller pass embeddings it already made with this same embedder (one row per
    item); otherwise they are computed here."""
    if not items:
        return []
    for item in items:
        _check_kind(item.kind)
    if vectors is None:
        vectors = memory_vectors(embedder, [(item.text, item.question) for item in items])
    if vectors.shape[0] != len(items):
        raise ValueError(f"{len(items)} items but {vectors.shape[0]} vectors")
    now = utcnow()
    rows = [
        {
            **_columns(item),
            "embedding": _encode(vec),
            "embedding_model": embedder.name,
            "created_at": now,
            "updated_at": now,
        }
        for item, vec in zip(items, vectors, strict=True)
    ]
    ids = list(session.scalars(insert(Memory).returning(Memory.id, sort_by_parameter_order=True), rows))
    if index is not None:
        index.add_on_commit(session, ids, items, vectors)
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
    """Change what a memory says (and re-embed it); None if there is no such memory."""
    memory = session.get(Memory, memory_id)
    if memory is None:
        return None
    if not isinstance(question, _Keep):
        memory.question = question
    memory.text = text
    vector = memory_vectors(embedder, [(text, memory.question)])[0]
    memory.embedding = _encode(vector)
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
            row.embedding, row.embedding_model = _encode(vector), embedder.name
        session.flush()
        if index is not None:
            index.remove_on_commit(session, [row.id for row in rows])
            index.add_on_commit(session, [row.id for row in rows], rows, vectors)
    return len(ids)


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


def _embed_one(embedder: Embeds, text: str) -> np.ndarray:
    return np.asarray(embedder.embed([text])[0], dtype=np.float32)


def _encode(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def _decode(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.empty((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), -1).astype(np.float32, copy=False)


# --- searching -----------------------------------------------------------------------------------


def search_memories(
    session: Session,
    *,
    audience: Audience,
    query: str,
    embedder: Embeds,
    k: int = 5,
    kinds: set[str] | None = None,
    index: VectorIndex | None = None,
    candidates: int = CANDIDATES,
    query_vector: np.ndarray | None = None,
) -> list[MemoryHit]:
    """The `k` memories that best answer `query` among those `audience` may see, best first.
    `query_vector`: the query's embedding, if the caller already has it (it is computed otherwise)."""
    if k <= 0 or not query.strip() or (kinds is not None and not kinds):
        return []
    pool = max(candidates, k)
    vector = _embed_one(embedder, query) if query_vector is None else np.asarray(query_vector, np.float32)
    by_vector = vector_search(
        session, audience=audience, vector=vector, model=embedder.name, k=pool, kinds=kinds, index=index
    )
    by_keyword = keyword_search(session, audience=audience, query=query, k=pool, kinds=kinds)
    fused = reciprocal_rank_fusion(
        [[memory_id for memory_id, _ in by_vector], by_keyword], weights=[1.0, KEYWORD_WEIGHT]
    )
    similarities = dict(by_vector)
    # A few spare ids: one the index still holds may have been deleted since (it is dropped below).
    return _read_hits(session, audience, fused[: k + 5], similarities)[:k]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], *, weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: each id scores sum(weight / (k + rank)); highest first, ties by id."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, memory_id in enumerate(ranking, start=1):
            scores[memory_id] = scores.get(memory_id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _read_hits(
    session: Session, audience: Audience, fused: Sequence[tuple[int, float]], similarities: dict[int, float]
) -> list[MemoryHit]:
    ids = [memory_id for memory_id, _ in fused]
    # By primary key, then the visibility rule in Python: with visible_to in the WHERE clause SQLite
    # prefers the (workspace, channel) index and walks a whole workspace to find ten rows.
    rows = session.scalars(select(Memory).where(Memory.id.in_(ids)))
    by_id = {row.id: row for row in rows if can_see(audience, row)}
    return [
        MemoryHit(
            row.id, row.kind, row.text, row.question, row.channel_id, row.source_ts, score, similarities.get(row.id)
        )
        for memory_id, score in fused
        if (row := by_id.get(memory_id)) is not None
    ]


def vector_search(
    session: Session,
    *,
    audience: Audience,
    vector: np.ndarray,
    model: str,
    k: int,
    kinds: set[str] | None = None,
    index: VectorIndex | None = None,
) -> list[tuple[int, float]]:
    """(memory id, cosine) of the `k` visible memories nearest `vector`, nearest first."""
    if index is not None:
        if index.model != model:
            raise ValueError(f"the vector index holds {index.model} vectors, not {model}")
        return index.search(audience, vector, k=k, kinds=kinds)
    stmt = select(Memory.id, Memory.embedding).where(
        visible_to(audience, Memory), Memory.embedding_model == model, Memory.embedding.is_not(None)
    )
    if kinds is not None:
        stmt = stmt.where(Memory.kind.in_(sorted(kinds)))
    rows = session.execute(stmt).all()
    if not rows:
        return []
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    sims = _decode([row[1] or b"" for row in rows]) @ np.asarray(vector, dtype=np.float32)
    top = _top_k(sims, k)
    return [(int(ids[i]), float(sims[i])) for i in top]


def keyword_search(
    session: Session, *, audience: Audience, query: str, k: int, kinds: set[str] | None = None
) -> list[int]:
    """Ids of the `k` visible memories that best match the query's words, best first."""
    terms = query_terms(query)
    if not terms or k <= 0:
        return []
    if session.get_bind().dialect.name == "sqlite":
        terms = _affordable_terms(session, terms)
        if not terms:
            return []
        stmt = _fts_statement(audience, terms, k)
    else:
        stmt = _like_statement(audience, terms, k)
    if kinds is not None:
        stmt = stmt.where(Memory.kind.in_(sorted(kinds)))
    return list(session.scalars(stmt))


# Words that carry no topic. Without them an FTS query does not match (and rank) most of the table.
STOPWORDS = frozenset(
    """
    a about above after again all also am an and any are as at be been before being below between both but by
    can could did do does doing done down during each few for from further get got had has have having he her here
    hers him his how i if in into is it its just know let like me more most my no nor not now of off on once only
    or other our ours out over own please remind same she should so some such tell than thank thanks that the their
    them then there these they this those through to too under until up us very was we were what when where which
    while who whom why will with would you your yours anyone someone somebody anybody hey hi ok okay s t d ll m re ve
    don doesn didn isn aren wasn weren won wouldn shouldn couldn
    """.split()  # noqa: SIM905
)
MAX_TERMS = 16
_WORD = re.compile(r"[^\W_]+")  # letters and digits: unicode61 splits on everything else


def query_terms(query: str) -> list[str]:
    """The query's topic words, lowercased and de-duplicated. Only word characters survive, so FTS5
    syntax in user text (quotes, AND/OR/NOT/NEAR, *, -, ^, :, parentheses) can never reach the parser."""
    words = (word.lower() for word in _WORD.findall(query))
    kept = [word for word in words if word not in STOPWORDS]
    return list(dict.fromkeys(kept))[:MAX_TERMS]


# FTS5 ranks every row that matches any term, and each is then looked up for the visibility check:
# a few microseconds a row, so a word found in 100k memories would cost hundreds of milliseconds.
# Terms are taken rarest first while their matches fit this budget; the rest are too common to rank
# by (low IDF), and the vector half still sees the whole question.
KEYWORD_BUDGET = 2_000


def _affordable_terms(session: Session, terms: Sequence[str]) -> list[str]:
    """The terms that match anything, rarest first, while their matches fit KEYWORD_BUDGET."""
    counted = sorted((_matches(session, term, KEYWORD_BUDGET + 1), position) for position, term in enumerate(terms))
    kept, spent = [], 0
    for matches, position in counted:
        if matches == 0:
            continue
        if spent + matches > KEYWORD_BUDGET:
            break
        kept.append(terms[position])
        spent += matches
    return kept


def _matches(session: Session, term: str, cap: int) -> int:
    """How many memories contain `term`, counting no further than `cap` (so a common word costs no more
    than a rare one). FTS5 applies its own tokenizer and stemmer to the quoted term."""
    stmt = text(
        "SELECT count(*) FROM (SELECT rowid FROM memories_fts WHERE memories_fts MATCH :term LIMIT :cap)"
    ).bindparams(term=f'"{term}"', cap=cap)
    return int(session.scalar(stmt) or 0)


def _fts_statement(audience: Audience, terms: Sequence[str], k: int) -> Select[Any]:
    # Each term is a quoted FTS5 string, so it is always taken literally; OR lets bm25 rank partial matches.
    match = " OR ".join(f'"{term}"' for term in terms)
    fts = table("memories_fts", column("rowid"))
    return (
        select(Memory.id)
        .select_from(fts)
        .join(Memory, Memory.id == fts.c.rowid)
        .where(text("memories_fts MATCH :match").bindparams(match=match), visible_to(audience, Memory))
        .order_by(text("bm25(memories_fts)"))
        .limit(k)
    )


def _like_statement(audience: Audience, terms: Sequence[str], k: int) -> Select[Any]:
    # No full-text index here: rank by how many of the terms a memory contains.
    matches: list[ColumnElement[bool]] = []
    for term in terms:
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        haystack = func.lower(Memory.text + " " + func.coalesce(Memory.question, ""))
        matches.append(haystack.like(pattern, escape="\\"))
    score: ColumnElement[int] = case((matches[0], 1), else_=0)
    for match in matches[1:]:
        score = score + case((match, 1), else_=0)
    return (
        select(Memory.id)
        .where(or_(*matches), visible_to(audience, Memory))
        .order_by(score.desc(), Memory.id.desc())
        .limit(k)
    )


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


# --- the in-process vector index -----------------------------------------------------------------

# (workspace, None) holds a workspace's public memories; (workspace, channel) one private conversation's.
PartitionKey = tuple[str, str | None]
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
# Below this many vectors a partition is scanned whole (about 5 ms per 30k on two cores); above it,
# an inverted file (k-means lists) narrows the scan to the lists nearest the query.
IVF_THRESHOLD = 50_000
# Share of a partition's lists scanned per query: recall against latency. Questions and the statements
# that answer them can sit in different lists. Measured at 1M memories (bench/retrieval.py, 2 cores,
# per question with its embedding): 0.1 -> recall@5 0.766, p95 32 ms; 0.2 -> 0.806, 39 ms;
# 0.3 -> 0.819, 44 ms; exact search 0.843, 141 ms.
PROBE_FRACTION = 0.2
MIN_PROBES = 8
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_LIST = 48
ASSIGN_CHUNK = 16_384
# Recent additions are scanned whole until there are this many (or an eighth of the partition);
# then they are filed into their lists.
TAIL_MAX = 16_384
TAIL_SHARE = 8


def partition_key(workspace_id: str, channel_id: str, channel_type: str) -> PartitionKey:
    """The visibility scope of a memory: the same rule as db.visibility.can_see."""
    return (workspace_id, None if is_public(channel_type) else channel_id)


class VectorIndex:
    """Every stored embedding of one model, in memory, partitioned by visibility so that a search only
    ever scans the partitions its audience may see: its workspace's public one and its own channel's.

    Build it once (`VectorIndex.build`) and pass it to every add/update/delete/search: changes reach
    it when their transaction commits. Safe to share between threads."""

    def __init__(
        self,
        *,
        model: str,
        ivf_threshold: int = IVF_THRESHOLD,
        probe_fraction: float = PROBE_FRACTION,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.ivf_threshold = ivf_threshold
        self.probe_fraction = probe_fraction
        self._partitions: dict[PartitionKey, _Partition] = {}
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(seed)

    @classmethod
    def build(
        cls,
        session: Session,
        *,
        model: str,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> VectorIndex:
        """Load every memory embedded with `model` from the database."""
        index = cls(model=model, **options)
        stmt = (
            select(
                Memory.id, Memory.workspace_id, Memory.channel_id, Memory.channel_type, Memory.kind, Memory.embedding
            )
            .where(Memory.embedding_model == model, Memory.embedding.is_not(None))
            .execution_options(yield_per=50_000)
        )
        groups: dict[PartitionKey, tuple[list[int], list[int], list[bytes]]] = {}
        loaded = 0
        for batch in session.execute(stmt).partitions():
            for memory_id, workspace_id, channel_id, channel_type, kind, blob in batch:
                ids, kinds, blobs = groups.setdefault(
                    partition_key(workspace_id, channel_id, channel_type), ([], [], [])
                )
                ids.append(memory_id)
                kinds.append(KIND_CODES.get(kind, len(KINDS)))
                blobs.append(blob or b"")
            loaded += len(batch)
            if progress is not None:
                progress(loaded)
        for key, (ids, kinds, blobs) in groups.items():
            index._append(key, np.asarray(ids, np.int64), np.asarray(kinds, np.int8), _decode(blobs))
            blobs.clear()
        with index._lock:
            for partition in index._partitions.values():
                partition.maintain(index.ivf_threshold, index._rng)
        return index

    def __len__(self) -> int:
        with self._lock:
            return sum(partition.live for partition in self._partitions.values())

    def __contains__(self, memory_id: object) -> bool:
        if not isinstance(memory_id, int):
            return False
        with self._lock:
            return any(partition.contains(memory_id) for partition in self._partitions.values())

    def partition_sizes(self) -> dict[PartitionKey, int]:
        with self._lock:
            return {key: partition.live for key, partition in self._partitions.items()}

    def add(self, memory_ids: Sequence[int], placed: Sequence[Placed], vectors: np.ndarray) -> None:
        """File vectors under their memories' visibility partitions (now, not at commit)."""
        groups: dict[PartitionKey, list[int]] = {}
        for row, item in enumerate(placed):
            groups.setdefault(partition_key(item.workspace_id, item.channel_id, item.channel_type), []).append(row)
        codes = np.asarray([KIND_CODES.get(item.kind, len(KINDS)) for item in placed], np.int8)
        ids = np.asarray(memory_ids, np.int64)
        matrix = np.asarray(vectors, np.float32).reshape(len(placed), -1)
        with self._lock:
            for key, rows in groups.items():
                self._append(key, ids[rows], codes[rows], matrix[rows])
                self._partitions[key].maintain(self.ivf_threshold, self._rng)

    def remove(self, memory_ids: Iterable[int]) -> int:
        """Drop these memories' vectors (now, not at commit); returns how many were held."""
        ids = np.fromiter(memory_ids, dtype=np.int64)
        if ids.size == 0:
            return 0
        with self._lock:
            removed = 0
            for partition in self._partitions.values():
                removed += partition.remove(ids)
                partition.maintain(self.ivf_threshold, self._rng)
            return removed

    def add_on_commit(
        self, session: Session, memory_ids: Sequence[int], placed: Sequence[Placed], vectors: np.ndarray
    ) -> None:
        ids, items, matrix = list(memory_ids), list(placed), np.array(vectors, dtype=np.float32)
        _on_commit(session, lambda: self.add(ids, items, matrix))

    def remove_on_commit(self, session: Session, memory_ids: Iterable[int]) -> None:
        ids = list(memory_ids)
        _on_commit(session, lambda: self.remove(ids))

    def search(
        self, audience: Audience, vector: np.ndarray, *, k: int, kinds: set[str] | None = None
    ) -> list[tuple[int, float]]:
        """(memory id, cosine) of the `k` nearest vectors `audience` may see, nearest first."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        codes = None if kinds is None else np.asarray([KIND_CODES[kind] for kind in kinds if kind in KIND_CODES])
        found_ids, found_sims = [], []
        with self._lock:
            for key in ((audience.workspace_id, None), (audience.workspace_id, audience.channel_id)):
                partition = self._partitions.get(key)
                if partition is not None:
                    ids, sims = partition.search(query, k, codes, self.probe_fraction)
                    found_ids.append(ids)
                    found_sims.append(sims)
        if not found_ids:
            return []
        ids, sims = np.concatenate(found_ids), np.concatenate(found_sims)
        return [(int(ids[i]), float(sims[i])) for i in _top_k(sims, k)]

    def _append(self, key: PartitionKey, ids: np.ndarray, kinds: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            partition = self._partitions.get(key)
            if partition is None:
                partition = self._partitions[key] = _Partition(vectors.shape[1])
            partition.append(ids, kinds, vectors)


class _Partition:
    """One visibility scope's vectors. Rows [0, filed) are grouped by inverted-file list once the
    partition is large enough to have lists; rows [filed, n) are recent additions, scanned whole.
    Deleted rows stay in place, masked dead, until the next reorganisation."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self.dead = 0
        self.ids = np.empty(0, np.int64)
        self.kinds = np.empty(0, np.int8)
        self.alive = np.empty(0, bool)
        self.labels = np.empty(0, np.int32)
        self.vecs = np.empty((0, dim), np.float32)
        self.centroids: np.ndarray | None = None
        self.offsets = np.zeros(1, np.int64)
        self.filed = 0
        self.trained_on = 0

    @property
    def live(self) -> int:
        return self.n - self.dead

    def contains(self, memory_id: int) -> bool:
        return bool(np.any((self.ids[: self.n] == memory_id) & self.alive[: self.n]))

    def append(self, ids: np.ndarray, kinds: np.ndarray, vectors: np.ndarray) -> None:
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of size {vectors.shape[1]} in an index of size {self.dim}")
        end = self.n + len(ids)
        if end > len(self.ids):
            self._grow(end)
        self.ids[self.n : end] = ids
        self.kinds[self.n : end] = kinds
        self.alive[self.n : end] = True
        self.labels[self.n : end] = -1
        self.vecs[self.n : end] = vectors
        self.n = end

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * len(self.ids), 64)
        for name in ("ids", "kinds", "alive", "labels", "vecs"):
            old = getattr(self, name)
            new = np.empty((capacity, *old.shape[1:]), old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def remove(self, ids: np.ndarray) -> int:
        hit = np.flatnonzero(np.isin(self.ids[: self.n], ids) & self.alive[: self.n])
        self.alive[hit] = False
        self.dead += len(hit)
        return len(hit)

    def search(
        self, query: np.ndarray, k: int, kind_codes: np.ndarray | None, probe_fraction: float
    ) -> tuple[np.ndarray, np.ndarray]:
        spans = self._spans(query, probe_fraction)
        sims = np.concatenate([self.vecs[start:end] @ query for start, end in spans])
        rows = np.concatenate([np.arange(start, end) for start, end in spans])
        usable = self.alive[rows]
        if kind_codes is not None:
            usable &= np.isin(self.kinds[rows], kind_codes)
        rows, sims = rows[usable], sims[usable]
        top = _top_k(sims, k)
        return self.ids[rows[top]], sims[top]

    def _spans(self, query: np.ndarray, probe_fraction: float) -> list[tuple[int, int]]:
        """The row ranges to scan: every row, or the nearest lists plus the unfiled tail."""
        if self.centroids is None:
            return [(0, self.n)]
        lists = len(self.centroids)
        probes = min(lists, max(MIN_PROBES, math.ceil(lists * probe_fraction)))
        nearest = _top_k(self.centroids @ query, probes)
        spans = [(int(self.offsets[i]), int(self.offsets[i + 1])) for i in nearest]
        return [*spans, (self.filed, self.n)]

    def maintain(self, threshold: int, rng: np.random.Generator) -> None:
        """Keep the inverted file worth its cost: create it when the partition outgrows a full scan,
        retrain it when the partition has grown well past what it was trained on, and file the
        recent additions (and drop the dead rows) before they make each query slow."""
        if self.live < threshold:
            if self.centroids is not None or self.dead * 2 > self.n:
                self.centroids, self.trained_on = None, 0
                self._reorganise()
            return
        if self.centroids is None or self.live > 4 * self.trained_on:
            self._train(rng)
            self._reorganise()
        elif self.n - self.filed > min(TAIL_MAX, self.n // TAIL_SHARE) or self.dead * 4 > self.n:
            self._reorganise()

    def _train(self, rng: np.random.Generator) -> None:
        live_rows = np.flatnonzero(self.alive[: self.n])
        lists = max(1, int(math.sqrt(len(live_rows))))
        sample_size = min(len(live_rows), KMEANS_SAMPLE_PER_LIST * lists)
        sample = self.vecs[np.sort(rng.choice(live_rows, sample_size, replace=False))]
        self.centroids = _spherical_kmeans(sample, lists, rng)
        self.labels[: self.n] = -1  # every row is re-filed under the new lists
        self.trained_on = len(live_rows)

    def _reorganise(self) -> None:
        """Drop dead rows and sort the rest by list, so each list is one contiguous slice."""
        keep = np.flatnonzero(self.alive[: self.n])
        ids, kinds, labels, vecs = self.ids[keep], self.kinds[keep], self.labels[keep], self.vecs[keep]
        if self.centroids is not None:
            unfiled = np.flatnonzero(labels < 0)
            labels[unfiled] = _assign(vecs[unfiled], self.centroids)
            order = np.argsort(labels, kind="stable")
            ids, kinds, labels, vecs = ids[order], kinds[order], labels[order], vecs[order]
            self.offsets = np.searchsorted(labels, np.arange(len(self.centroids) + 1)).astype(np.int64)
        else:
            labels[:] = -1
            self.offsets = np.zeros(1, np.int64)
        self.ids, self.kinds, self.labels, self.vecs = ids, kinds, labels, vecs
        self.alive = np.ones(len(ids), bool)
        self.n, self.dead = len(ids), 0
        self.filed = self.n if self.centroids is not None else 0


def _assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid of each vector, in chunks so the score matrix stays small."""
    labels = np.empty(len(vectors), np.int32)
    for start in range(0, len(vectors), ASSIGN_CHUNK):
        labels[start : start + ASSIGN_CHUNK] = np.argmax(vectors[start : start + ASSIGN_CHUNK] @ centroids.T, axis=1)
    return labels


def _spherical_kmeans(sample: np.ndarray, lists: int, rng: np.random.Generator) -> np.ndarray:
    """k-means on the unit sphere (cosine), which is what the lists are probed with."""
    centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        labels = _assign(sample, centroids)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=lists)
        filled = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
        centroids[filled] = np.add.reduceat(sample[order], starts, axis=0)
        empty = np.flatnonzero(counts == 0)
        # An empty list is reseeded on a random vector rather than left to hold nothing.
        centroids[empty] = sample[rng.choice(len(sample), len(empty), replace=False)]
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids


# --- keeping the index in step with the transaction ----------------------------------------------

_PENDING = "ember.memory.index_pending"
_LISTENING = "ember.memory.index_listening"


def _on_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` once the session's transaction commits; forget it if it rolls back. So a rolled-back
    add leaves no vector behind, and a rolled-back delete does not lose one."""
    session.info.setdefault(_PENDING, []).append(action)
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "after_commit", _run_pending)
        event.listen(session, "after_rollback", _drop_pending)


def _run_pending(session: Session) -> None:
    for action in session.info.pop(_PENDING, []):
        action()


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
