"""Memory retrieval at scale: Ember's hybrid search beside a candidate index (usearch HNSW),
keyword-only and brute-force vector search.

    python -m bench.retrieval                   # 1,000,000 stored memories (30-40 minutes on 2 cores)
    python -m bench.retrieval --turns 20000     # a quick run
    python -m bench.retrieval --cache /tmp/ember-bench-cache   # re-runs skip embedding the texts

It generates a synthetic history of several workspaces (public and private channels, DMs, threads;
facts, corrections and remembered turns; bench/retrieval_world.py, from bench/retrieval_words.py),
stores it in a SQLite file in a temporary directory through db.memory, and then asks held-out
questions whose right memory is known. Each question is a paraphrase: reworded from a separate bank
of phrasings, with the subject often called by another name, so that neither the stored text nor the
stored question is copied. It prints one table:

  (a) Ember          search_memories: FTS5 bm25 + the vector index (db.vector_index: exact scan of
                     small partitions, a numpy inverted file for large ones), fused (RRF)
      index only     the vector index alone (how much the keyword half adds)
  (b) HNSW candidate the same two rows with usearch HNSW graphs for the large partitions
                     (bench/retrieval_hnsw.py; skipped, with a note, when usearch is not installed)
      FTS5 only      keyword search alone (bm25), the visibility filter in SQL
      brute force    numpy cosine over every stored vector the asker may see (exact)

Every method applies the same visibility rule, and every hit is checked against db.visibility.can_see.
Latency is per question, one database session each: the search alone, and with the question's own
embedding (made once per question, one at a time, as a live question is) added.

The held-out answers and their near neighbours (other facts about the same subjects, chatter about
them, the same topic in other workspaces, stale private copies) are embedded one by one with the real
model. The bulk filler reuses the vectors of a smaller pool of distinct generated texts (each filler
row's text is its pool text), so that a million rows load in minutes; the output says how many.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, text

from bench.retrieval_words import WORKSPACES, content_words
from bench.retrieval_world import BATCH, Question, World, build_world, embed_all, load
from db.memory import KINDS, memory_vectors
from db.schema import Memory
from db.search import keyword_search, search_memories, vector_search
from db.session import Database
from db.vector_index import IVF_THRESHOLD, SearchesVectors, VectorIndex
from db.visibility import Audience, can_see, is_public
from models.embeddings import Embedder

WIDTH = 48  # the method column

# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    with_embedding: list[float] = field(default_factory=list)
    found: int = 0
    asked: int = 0
    leaks: int = 0

    def row(self) -> str:
        search, total = sorted(self.latencies), sorted(self.with_embedding)
        recall = f"{self.found / self.asked:9.3f}" if self.asked else f"{'':9}"
        figures = f"{_pct(search, 50):>8.1f} {_pct(search, 95):>8.1f} {_pct(total, 50):>8.1f} {_pct(total, 95):>8.1f}"
        return f"{self.name:<{WIDTH}} {figures} {recall} {self.leaks:>6}"


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))] * 1000)


# A method answers a question given its embedding (made once per question, timed on its own).
Method = Callable[[Question, np.ndarray], list[int]]


def embed_questions(embedder: Embedder, questions: Sequence[Question]) -> tuple[np.ndarray, list[float]]:
    """Each question's embedding, made one at a time as a live question is, with how long each took."""
    for question in questions[:20]:
        embedder.embed([question.text])  # warm-up
    vectors, seconds = [], []
    for question in questions:
        started = time.perf_counter()
        vectors.append(embedder.embed([question.text])[0])
        seconds.append(time.perf_counter() - started)
    return np.stack(vectors), seconds


def measure(
    db: Database, name: str, method: Method, questions: Sequence[Question], vectors: np.ndarray, embed_s: list[float]
) -> Result:
    """`embed_s` is added to each question's search time for the end-to-end figure (None: keywords only)."""
    result = Result(name)
    for question, vector in zip(questions[:20], vectors, strict=False):
        method(question, vector)  # warm-up
    for question, vector, embedding in zip(questions, vectors, embed_s, strict=True):
        started = time.perf_counter()
        ids = method(question, vector)[:5]
        elapsed = time.perf_counter() - started
        result.latencies.append(elapsed)
        result.with_embedding.append(elapsed + embedding)
        result.asked += 1
        result.found += question.memory_id in ids
        result.leaks += _leaks(db, question.audience, ids)
    return result


def _leaks(db: Database, audience: Audience, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    with db.session() as session:
        rows = session.scalars(select(Memory).where(Memory.id.in_(ids))).all()
        return sum(not can_see(audience, row) for row in rows)


class BruteForce:
    """Exact cosine over every stored vector the asker may see: one matrix product per question."""

    def __init__(self, db: Database, model: str) -> None:
        ids, teams, channels, public, blobs = [], [], [], [], []
        with db.session() as session:
            stmt = select(Memory.id, Memory.workspace_id, Memory.channel_id, Memory.channel_type, Memory.embedding)
            for part in session.execute(
                stmt.where(Memory.embedding_model == model).execution_options(yield_per=50_000)
            ).partitions():
                for memory_id, team, channel, channel_type, blob in part:
                    ids.append(memory_id)
                    teams.append(team)
                    channels.append(channel)
                    public.append(is_public(channel_type))
                    blobs.append(blob or b"")
        self.ids = np.asarray(ids, np.int64)
        self.teams = np.asarray(teams)
        self.channels = np.asarray(channels)
        self.public = np.asarray(public)
        self.matrix = np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), -1)

    def search(self, audience: Audience, vector: np.ndarray, k: int) -> list[int]:
        visible = (self.teams == audience.workspace_id) & (self.public | (self.channels == audience.channel_id))
        sims = np.where(visible, self.matrix @ vector, -np.inf)
        top = np.argpartition(-sims, k)[:k]
        return [int(self.ids[i]) for i in top[np.argsort(-sims[top])] if np.isfinite(sims[i])]


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=1_000_000, help="memories to store (default 1,000,000)")
    parser.add_argument("--questions", type=int, default=1_000, help="held-out paraphrased questions")
    parser.add_argument("--pool", type=int, default=0, help="distinct filler texts to embed (default N/50, 2k-20k)")
    parser.add_argument("--keep", type=Path, help="keep the database in this directory instead of a temp one")
    parser.add_argument("--cache", type=Path, help="reuse (or save) the embeddings of the generated texts here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="ember-bench-"))
    try:
        pool = args.pool or min(20_000, max(2_000, args.turns // 50))
        run(args.turns, args.questions, pool, workdir, args.cache)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run(total: int, question_count: int, pool_size: int, workdir: Path, cache: Path | None) -> None:
    load_at_start = _load_average()
    wall = time.perf_counter()
    rng = random.Random(2026)
    world = build_world(rng, questions=question_count, pool_size=pool_size)
    embedder = Embedder.load()
    print(
        f"world: {len(WORKSPACES)} workspaces, {len(world.real):,} answers and near neighbours, "
        f"{len(world.questions):,} held-out questions, {len(world.pool):,} distinct filler texts",
        flush=True,
    )
    _show_paraphrases(world)
    real, embed_rate = embed_all(embedder, world.real, "answers and near neighbours", cache)
    pool, _ = embed_all(embedder, world.pool, "filler texts", cache)
    if math.isnan(embed_rate):  # cached: time a sample, so the table still says how fast memories are embedded
        sample = world.real[:1024]
        started = time.perf_counter()
        memory_vectors(embedder, [(m.text, m.question) for m in sample])
        embed_rate = len(sample) / (time.perf_counter() - started)
    db = Database(f"sqlite:///{workdir / 'ember.db'}")
    db.upgrade()
    print(f"storing {total:,} memories into {workdir / 'ember.db'}", flush=True)
    load_s = load(db, embedder, world, total=total, real=real, pool=pool)
    with db.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    size = sum(f.stat().st_size for f in workdir.glob("ember.db*"))
    index, index_s = _timed_build(db, VectorIndex, embedder.name, "vector index (exact + numpy inverted file)")
    built: dict[str, tuple[Any, float]] = {"index": (index, index_s)}
    try:
        from bench.retrieval_hnsw import HnswIndex
    except ImportError:
        print("usearch is not installed (pip install usearch): the HNSW candidate's rows are left out", flush=True)
    else:
        built["candidate"] = _timed_build(db, HnswIndex, embedder.name, "candidate index (exact + usearch HNSW)")
    candidate = built["candidate"][0] if "candidate" in built else None
    results = _compare(db, embedder, index, candidate, world.questions)
    _report(total, world, embed_rate, load_s, size, built, results, time.perf_counter() - wall, load_at_start)


def _timed_build(db: Database, kind: Any, model: str, label: str) -> tuple[Any, float]:
    started = time.perf_counter()
    with db.session() as session:
        index = kind.build(session, model=model, progress=_progress(f"{label}: read"))
    seconds = time.perf_counter() - started
    print(f"{label}: {len(index):,} vectors in {seconds:.1f} s", flush=True)
    return index, seconds


def _load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _progress(label: str) -> Callable[[int], None]:
    def report(count: int) -> None:
        if count % 200_000 < 50_000:
            print(f"  {label} {count:>9,}", flush=True)

    return report


def _compare(
    db: Database,
    embedder: Embedder,
    index: VectorIndex,
    candidate: SearchesVectors | None,
    questions: Sequence[Question],
) -> list[Result]:
    def hybrid_with(searcher: SearchesVectors) -> Method:
        def hybrid(q: Question, vector: np.ndarray) -> list[int]:
            with db.session() as session:
                hits = search_memories(
                    session,
                    audience=q.audience,
                    query=q.text,
                    embedder=embedder,
                    k=5,
                    index=searcher,
                    query_vector=vector,
                )
                return [hit.memory_id for hit in hits]

        return hybrid

    def alone(searcher: SearchesVectors) -> Method:
        def index_only(q: Question, vector: np.ndarray) -> list[int]:
            with db.session() as session:
                found = vector_search(
                    session, audience=q.audience, vector=vector, model=embedder.name, k=5, index=searcher
                )
                return [memory_id for memory_id, _ in found]

        return index_only

    def keywords(q: Question, vector: np.ndarray) -> list[int]:
        with db.session() as session:
            return keyword_search(session, audience=q.audience, query=q.text, k=5)

    print("loading every vector for the brute-force baseline", flush=True)
    brute = BruteForce(db, embedder.name)

    def brute_force(q: Question, vector: np.ndarray) -> list[int]:
        return brute.search(q.audience, vector, 5)

    print(f"embedding {len(questions):,} questions one at a time", flush=True)
    vectors, embed_s = embed_questions(embedder, questions)
    no_embedding = [0.0] * len(questions)
    methods = [
        ("(a) Ember hybrid: FTS5 + numpy IVF, RRF", hybrid_with(index), embed_s),
        ("    Ember vector index alone (exact + IVF)", alone(index), embed_s),
    ]
    if candidate is not None:
        methods += [
            ("(b) candidate hybrid: FTS5 + usearch HNSW, RRF", hybrid_with(candidate), embed_s),
            ("    usearch HNSW candidate alone", alone(candidate), embed_s),
        ]
    methods += [
        ("(b) FTS5 keyword search alone (bm25)", keywords, no_embedding),
        ("(b) brute-force numpy cosine, exact", brute_force, embed_s),
    ]
    results = []
    for name, method, embedding in methods:
        print(f"asking {len(questions):,} questions: {name.strip()}", flush=True)
        results.append(measure(db, name, method, questions, vectors, embedding))
    results.append(Result("    (the query embedding alone)", [0.0] * len(embed_s), embed_s))
    return results


def _show_paraphrases(world: World) -> None:
    overlaps = [
        len(content_words(q.text) & content_words(q.stored)) / max(1, len(content_words(q.text)))
        for q in world.questions
    ]
    print(
        f"paraphrases share {statistics.mean(overlaps):.0%} of their content words with the stored memory (mean); e.g.:"
    )
    for question in world.questions[:4]:
        print(f"  stored: {question.stored!r}\n   asked: {question.text!r}")


def _report(
    total: int,
    world: World,
    embed_rate: float,
    load_s: float,
    size: int,
    built: dict[str, tuple[Any, float]],
    results: Sequence[Result],
    wall_s: float,
    load_at_start: str,
) -> None:
    filler = max(0, total - len(world.real))
    kinds = ", ".join(KINDS)
    print()
    print(
        f"Ember memory retrieval: {os.cpu_count()} CPU cores, model all-MiniLM-L6-v2 (384-d, float32),"
        f" N = {total:,} memories"
    )
    print(f"  history: {len(WORKSPACES)} workspaces; public/private channels, DMs, threads; kinds {kinds}")
    print(f"  {len(world.real):,} answers and near neighbours embedded one by one; {filler:,} filler rows reuse the")
    print(
        f"  vectors of {len(world.pool):,} distinct embedded filler texts;"
        f" {len(world.questions):,} held-out paraphrased questions"
    )
    print(f"  insert: {total / load_s:,.0f} items/s (add_memories, batches of {BATCH:,}, vectors precomputed);")
    print(f"  embedding new memories: {embed_rate:,.0f} memories/s; database size {size / 2**30:.2f} GiB;")
    index, index_s = built["index"]
    print(
        f"  vector index built in {index_s:.1f} s ({len(index):,} vectors, {len(index.partition_sizes())} partitions;"
        f" inverted file above {IVF_THRESHOLD:,} vectors, probing {index.probe_fraction:.0%} of the lists)"
    )
    if "candidate" in built:
        from bench.retrieval_hnsw import CONNECTIVITY, EXACT_THRESHOLD, EXPANSION_ADD, EXPANSION_SEARCH

        candidate, candidate_s = built["candidate"]
        graphs = sum(candidate.uses_graph(key) for key in candidate.partition_sizes())
        print(
            f"  candidate built in {candidate_s:.1f} s ({graphs} HNSW graphs: connectivity {CONNECTIVITY},"
            f" expansion add {EXPANSION_ADD} / search {EXPANSION_SEARCH}; scanned whole below {EXACT_THRESHOLD:,})"
        )
    print()
    print(f"{'':<{WIDTH}} {'search only (ms)':>17} {'+ query embed (ms)':>17}")
    print(f"{'method':<{WIDTH}} {'p50':>8} {'p95':>8} {'p50':>8} {'p95':>8} {'recall@5':>9} {'leaks':>6}")
    for result in results:
        print(result.row())
    print(
        f"(latency per question, one database session each; load average {_load_average()} at the end,"
        f" {load_at_start} at the start; run took {wall_s / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
