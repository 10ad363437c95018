"""The in-process vector index: every stored embedding of one model, partitioned by visibility.

One partition per visibility scope (a workspace's public memories; each private conversation's own),
so a search only ever scores what its audience may see. A partition below `IVF_THRESHOLD` vectors is
scanned whole (exact); above it, a numpy inverted file (spherical k-means lists) narrows the scan to
the lists nearest the query. Changes reach the index when their transaction commits
(`add_on_commit`, `remove_on_commit`).

An HNSW graph (usearch) was measured against it at 1M memories and lost on recall (bench/retrieval.py,
bench/retrieval_hnsw.py); see PROBE_FRACTION for the figures.

This is the lowest module of the memory store: db.memory and db.search import it, never the reverse.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from db.schema import Memory
from db.visibility import Audience, is_public

# (workspace, None) holds a workspace's public memories; (workspace, channel) one private conversation's.
PartitionKey = tuple[str, str | None]
VECTOR_DTYPE = np.dtype("<f4")  # the storage format of memories.embedding (see models.embeddings.to_bytes)
# Below this many vectors a partition is scanned whole (about 5 ms per 30k on two cores); above it,
# an inverted file (k-means lists) narrows the scan to the lists nearest the query.
IVF_THRESHOLD = 50_000
# Share of a partition's lists scanned per query: recall against latency. Questions and the statements
# that answer them can sit in different lists. Measured at 1M memories (bench/retrieval.py, 2 cores,
# per question with its embedding): 0.1 -> recall@5 0.766, p95 32 ms; 0.2 -> 0.806, 39 ms;
# 0.3 -> 0.819, 44 ms; exact search 0.843, 141 ms. Against usearch's HNSW (connectivity 32, expansion
# 128/128) at 1M: recall@5 0.804 vs 0.382 hybrid, search p95 42 vs 18 ms, built in 43 vs 750 s. The
# graph most likely loses its way among the benchmark's filler, 50 copies of each of 20k vectors: on
# 30k real vectors it found 0.997 of the exact top 5, and 0.804 once the filler was 1,200 vectors x20.
PROBE_FRACTION = 0.2
MIN_PROBES = 8
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_LIST = 48
ASSIGN_CHUNK = 16_384
# Recent additions are scanned whole until there are this many (or an eighth of the partition);
# then they are filed into their lists.
TAIL_MAX = 16_384
TAIL_SHARE = 8


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


class SearchesVectors(Protocol):
    """What db.search needs of an index (VectorIndex here; the benchmark's baselines too)."""

    model: str

    def search(
        self, audience: Audience, vector: np.ndarray, *, k: int, kinds: set[str] | None = None
    ) -> list[tuple[int, float]]: ...


def partition_key(workspace_id: str, channel_id: str, channel_type: str) -> PartitionKey:
    """The visibility scope of a memory: the same rule as db.visibility.can_see."""
    return (workspace_id, None if is_public(channel_type) else channel_id)


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vectors(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.empty((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), -1).astype(np.float32, copy=False)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


# Per partition: memory ids, kind codes, and the stored vectors' bytes, in the same order.
StoredVectors = dict[PartitionKey, tuple[list[int], list[int], list[bytes]]]


def stored_vectors(
    session: Session, *, model: str, kind_code: Callable[[str], int], progress: Callable[[int], None] | None = None
) -> StoredVectors:
    """Every memory embedded with `model`, grouped by visibility partition, read in batches (what an
    index is built from)."""
    stmt = (
        select(Memory.id, Memory.workspace_id, Memory.channel_id, Memory.channel_type, Memory.kind, Memory.embedding)
        .where(Memory.embedding_model == model, Memory.embedding.is_not(None))
        .execution_options(yield_per=50_000)
    )
    groups: StoredVectors = {}
    loaded = 0
    for batch in session.execute(stmt).partitions():
        for memory_id, workspace_id, channel_id, channel_type, kind, blob in batch:
            ids, kinds, blobs = groups.setdefault(partition_key(workspace_id, channel_id, channel_type), ([], [], []))
            ids.append(memory_id)
            kinds.append(kind_code(kind))
            blobs.append(blob or b"")
        loaded += len(batch)
        if progress is not None:
            progress(loaded)
    return groups


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
        self._kind_codes: dict[str, int] = {}

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
        groups = stored_vectors(session, model=model, kind_code=index._kind_code, progress=progress)
        for key, (ids, kinds, blobs) in groups.items():
            index._append(key, np.asarray(ids, np.int64), np.asarray(kinds, np.int8), decode_vectors(blobs))
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

    def uses_lists(self, key: PartitionKey) -> bool:
        """Whether this partition is searched through inverted lists (rather than scanned whole)."""
        with self._lock:
            partition = self._partitions.get(key)
            return partition is not None and partition.centroids is not None

    def add(self, memory_ids: Sequence[int], placed: Sequence[Placed], vectors: np.ndarray) -> None:
        """File vectors under their memories' visibility partitions (now, not at commit)."""
        groups: dict[PartitionKey, list[int]] = {}
        for row, item in enumerate(placed):
            groups.setdefault(partition_key(item.workspace_id, item.channel_id, item.channel_type), []).append(row)
        codes = np.asarray([self._kind_code(item.kind) for item in placed], np.int8)
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
        codes = None if kinds is None else np.asarray([self._kind_codes[k] for k in kinds if k in self._kind_codes])
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
        return [(int(ids[i]), float(sims[i])) for i in top_k(sims, k)]

    def _kind_code(self, kind: str) -> int:
        with self._lock:
            return self._kind_codes.setdefault(kind, len(self._kind_codes))

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
        top = top_k(sims, k)
        return self.ids[rows[top]], sims[top]

    def _spans(self, query: np.ndarray, probe_fraction: float) -> list[tuple[int, int]]:
        """The row ranges to scan: every row, or the nearest lists plus the unfiled tail."""
        if self.centroids is None:
            return [(0, self.n)]
        lists = len(self.centroids)
        probes = min(lists, max(MIN_PROBES, math.ceil(lists * probe_fraction)))
        nearest = top_k(self.centroids @ query, probes)
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
