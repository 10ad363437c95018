"""Finding memories again without ever showing one where it may not be seen.

- Keyword half: SQLite FTS5 (`memories_fts`, kept in step by triggers) ranked by bm25; PostgreSQL
  full-text search (a GIN index over `to_tsvector`, migration 0006) ranked by ts_rank; other
  databases fall back to LIKE.
- Vector half: the caller's `VectorIndex` (db.vector_index). Without one, the visible rows' vectors
  are read from SQL (correct, but slow past a few hundred thousand memories).
- The two ranked lists are fused with reciprocal rank fusion.
- Privacy (db.visibility): every SQL read carries `visible_to`; the index only scores the partitions
  the audience may see; and every hit is read back through `can_see` before it is returned.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, case, column, func, literal_column, or_, select, table, text
from sqlalchemy.orm import Session

from db.memory import Embeds
from db.schema import Memory
from db.vector_index import SearchesVectors, decode_vectors, top_k
from db.visibility import Audience, can_see, visible_to

# Standard RRF constant: damps the difference between rank 1 and rank 2 of either list.
RRF_K = 60
# A keyword rank counts a quarter of a vector rank: a reworded question shares few words with the memory
# that answers it (so keyword lists are noisier), while a query naming an exact identifier (a host, a
# ticket) still lifts that memory among the vector half's candidates. On bench/retrieval.py at 20k
# memories, recall@5 was 0.852 with the vector half alone, 0.850 at 0.25 and 0.844 at 0.5.
KEYWORD_WEIGHT = 0.25
# How many candidates each half contributes to the fusion.
CANDIDATES = 50


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


def search_memories(
    session: Session,
    *,
    audience: Audience,
    query: str,
    embedder: Embeds,
    k: int = 5,
    kinds: set[str] | None = None,
    index: SearchesVectors | None = None,
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


def _embed_one(embedder: Embeds, text: str) -> np.ndarray:
    return np.asarray(embedder.embed([text])[0], dtype=np.float32)


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
    index: SearchesVectors | None = None,
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
    sims = decode_vectors([row[1] or b"" for row in rows]) @ np.asarray(vector, dtype=np.float32)
    return [(int(ids[i]), float(sims[i])) for i in top_k(sims, k)]


def keyword_search(
    session: Session, *, audience: Audience, query: str, k: int, kinds: set[str] | None = None
) -> list[int]:
    """Ids of the `k` visible memories that best match the query's words, best first."""
    terms = query_terms(query)
    if not terms or k <= 0:
        return []
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        terms = _affordable_terms(session, terms)
        if not terms:
            return []
        stmt = _fts_statement(audience, terms, k) if dialect == "sqlite" else _tsquery_statement(audience, terms, k)
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
# (PostgreSQL's ts_rank is dearer still: the index holds no positions, so each match is parsed again.)
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
    than a rare one). FTS5 (or PostgreSQL) applies its own tokenizer and stemmer to the quoted term."""
    if session.get_bind().dialect.name == "postgresql":
        found = select(Memory.id).where(_TSVECTOR.bool_op("@@")(_tsquery([term]))).limit(cap).subquery()
        return int(session.scalar(select(func.count()).select_from(found)) or 0)
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


# The expression migration 0006 indexes, written out as SQL: with bound parameters in it (the config, the
# separator) the planner could not tell it is the indexed one. PostgreSQL's parser keeps a host, an address,
# a path or a version (vpn.acme.internal, dana@acme.io, 1.2.3) as one word; FTS5 splits them into their
# parts, and so does this, so that "acme" finds vpn.acme.internal on both.
_TSVECTOR: ColumnElement[Any] = literal_column(
    "to_tsvector('english', translate(memories.text || ' ' || coalesce(memories.question, ''), '.@/:-', '     '))"
)


def _tsquery(terms: Sequence[str]) -> ColumnElement[Any]:
    # Each term is quoted (query_terms leaves only letters and digits), so it is always taken literally;
    # OR (|) lets ts_rank rank partial matches, as bm25 does on SQLite. The english config stems the
    # query as it stemmed the memories.
    return func.to_tsquery(literal_column("'english'"), " | ".join(f"'{term}'" for term in terms))


def _tsquery_statement(audience: Audience, terms: Sequence[str], k: int) -> Select[Any]:
    query = _tsquery(terms)
    return (
        select(Memory.id)
        .where(_TSVECTOR.bool_op("@@")(query), visible_to(audience, Memory))
        .order_by(func.ts_rank(_TSVECTOR, query).desc(), Memory.id.desc())
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
