"""The benchmark's candidate vector index: db.vector_index's partitions with usearch HNSW graphs in
place of the numpy inverted file, for partitions of 50k vectors or more (smaller ones are scanned
whole). Measured beside Ember's index in the same run; it needs `pip install usearch` (not one of
Ember's dependencies: at 1M memories it lost on recall, 0.382 against 0.804; see db/vector_index.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy.orm import Session
from usearch.index import Index

from db.vector_index import PartitionKey, Placed, decode_vectors, partition_key, stored_vectors, top_k
from db.visibility import Audience

# Below this many vectors a partition is scanned whole (about 5 ms per 30k on two cores) and exact;
# above it the scan costs more than a graph search, and a graph is built (once, when it is crossed).
EXACT_THRESHOLD = 50_000
# A graph that shrinks below this share of the threshold goes back to a plain matrix.
SHRINK_SHARE = 0.5
# HNSW settings (usearch's names; hnswlib's M, efConstruction, ef). Measured at 1M memories
# (bench/retrieval.py, 2 cores): see the constants' use in VectorIndex and the benchmark's table.
CONNECTIVITY = 32
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
# A search filtered by kind asks the graph for this many times k, then more, until k survive the filter.
KIND_OVERFETCH = 4


class HnswIndex:
    """Every stored embedding of one model, partitioned by visibility as db.vector_index is; a
    partition of `exact_threshold` vectors or more is an HNSW graph. One lock; usearch's own calls
    run on one thread each, except bulk graph builds (`threads` workers: 0 is every core, and only 1
    builds the same graph every time). usearch reuses a removed key's slot on a later add."""

    def __init__(
        self,
        *,
        model: str,
        exact_threshold: int = EXACT_THRESHOLD,
        connectivity: int = CONNECTIVITY,
        expansion_add: int = EXPANSION_ADD,
        expansion_search: int = EXPANSION_SEARCH,
        threads: int = 0,
    ) -> None:
        self.model = model
        self.exact_threshold = exact_threshold
        self._graph_options = {
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "expansion_search": expansion_search,
        }
        self.threads = threads
        self._partitions: dict[PartitionKey, _Partition] = {}
        self._home: dict[int, PartitionKey] = {}  # memory id -> its partition
        self._kind_codes: dict[str, int] = {}
        self._lock = threading.RLock()

    @classmethod
    def build(
        cls,
        session: Session,
        *,
        model: str,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> HnswIndex:
        """Load every memory embedded with `model` from the database."""
        index = cls(model=model, **options)
        groups = stored_vectors(session, model=model, kind_code=index._kind_code, progress=progress)
        with index._lock:
            for key, (ids, kinds, blobs) in groups.items():
                index._file(key, np.asarray(ids, np.int64), np.asarray(kinds, np.int8), decode_vectors(blobs))
                blobs.clear()
        return index

    def __len__(self) -> int:
        with self._lock:
            return len(self._home)

    def __contains__(self, memory_id: object) -> bool:
        with self._lock:
            return isinstance(memory_id, int) and memory_id in self._home

    def partition_sizes(self) -> dict[PartitionKey, int]:
        with self._lock:
            return {key: len(partition) for key, partition in self._partitions.items() if len(partition)}

    def uses_graph(self, key: PartitionKey) -> bool:
        """Whether this partition is searched through its HNSW graph (rather than scanned whole)."""
        with self._lock:
            partition = self._partitions.get(key)
            return partition is not None and partition.graph is not None

    def add(self, memory_ids: Sequence[int], placed: Sequence[Placed], vectors: np.ndarray) -> None:
        """File vectors under their memories' visibility partitions (now, not at commit). A memory the
        index already holds is replaced."""
        groups: dict[PartitionKey, list[int]] = {}
        for row, item in enumerate(placed):
            groups.setdefault(partition_key(item.workspace_id, item.channel_id, item.channel_type), []).append(row)
        ids = np.asarray(memory_ids, np.int64)
        matrix = np.asarray(vectors, np.float32).reshape(len(placed), -1)
        with self._lock:
            codes = np.asarray([self._kind_code(item.kind) for item in placed], np.int8)
            self.remove(ids.tolist())
            for key, rows in groups.items():
                self._file(key, ids[rows], codes[rows], matrix[rows])

    def remove(self, memory_ids: Iterable[int]) -> int:
        """Drop these memories' vectors (now, not at commit); returns how many were held."""
        with self._lock:
            by_partition: dict[PartitionKey, list[int]] = {}
            for memory_id in dict.fromkeys(memory_ids):
                key = self._home.pop(memory_id, None)
                if key is not None:
                    by_partition.setdefault(key, []).append(memory_id)
            for key, ids in by_partition.items():
                partition = self._partitions[key]
                partition.remove(ids)
                partition.maintain(self.exact_threshold, self._graph_options, self.threads)
            return sum(len(ids) for ids in by_partition.values())

    def search(
        self, audience: Audience, vector: np.ndarray, *, k: int, kinds: set[str] | None = None
    ) -> list[tuple[int, float]]:
        """(memory id, cosine) of the `k` nearest vectors `audience` may see, nearest first."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        found_ids, found_sims = [], []
        with self._lock:
            codes = None if kinds is None else {self._kind_codes[kind] for kind in kinds if kind in self._kind_codes}
            if codes is not None and not codes:
                return []
            for key in ((audience.workspace_id, None), (audience.workspace_id, audience.channel_id)):
                partition = self._partitions.get(key)
                if partition is not None and len(partition):
                    ids, sims = partition.search(query, k, codes)
                    found_ids.append(ids)
                    found_sims.append(sims)
        if not found_ids:
            return []
        ids, sims = np.concatenate(found_ids), np.concatenate(found_sims)
        return [(int(ids[i]), float(sims[i])) for i in top_k(sims, k)]

    def _kind_code(self, kind: str) -> int:
        return self._kind_codes.setdefault(kind, len(self._kind_codes))

    def _file(self, key: PartitionKey, ids: np.ndarray, codes: np.ndarray, vectors: np.ndarray) -> None:
        partition = self._partitions.get(key)
        if partition is None:
            partition = self._partitions[key] = _Partition(vectors.shape[1])
        partition.append(ids, codes, vectors, self.threads)
        self._home.update(dict.fromkeys(ids.tolist(), key))
        partition.maintain(self.exact_threshold, self._graph_options, self.threads)


class _Partition:
    """One visibility scope's vectors: a matrix scanned whole (rows [0, n), deleted rows masked dead
    until the next compaction), or, once large, an HNSW graph keyed by memory id."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.kind_of: dict[int, int] = {}  # live memory id -> kind code
        self.graph: Index | None = None
        self.n = 0
        self.ids = np.empty(0, np.int64)
        self.kinds = np.empty(0, np.int8)
        self.alive = np.empty(0, bool)
        self.vecs = np.empty((0, dim), np.float32)

    def __len__(self) -> int:
        return len(self.kind_of)

    def append(self, ids: np.ndarray, kinds: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of size {vectors.shape[1]} in an index of size {self.dim}")
        self.kind_of.update(zip(ids.tolist(), kinds.tolist(), strict=True))
        if self.graph is not None:
            self.graph.add(ids, vectors, threads=threads if len(ids) > 1 else 1)
            return
        end = self.n + len(ids)
        if end > len(self.ids):
            self._grow(end)
        self.ids[self.n : end] = ids
        self.kinds[self.n : end] = kinds
        self.alive[self.n : end] = True
        self.vecs[self.n : end] = vectors
        self.n = end

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * len(self.ids), 64)
        for name in ("ids", "kinds", "alive", "vecs"):
            old = getattr(self, name)
            new = np.empty((capacity, *old.shape[1:]), old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def remove(self, ids: list[int]) -> None:
        for memory_id in ids:
            del self.kind_of[memory_id]
        if self.graph is not None:
            self.graph.remove(np.asarray(ids, np.uint64), threads=1)  # usearch reuses the slots on later adds
        else:
            self.alive[: self.n] &= ~np.isin(self.ids[: self.n], ids)

    def search(self, query: np.ndarray, k: int, codes: set[int] | None) -> tuple[np.ndarray, np.ndarray]:
        if self.graph is None:
            sims = self.vecs[: self.n] @ query  # a view: fancy indexing first would copy the matrix
            usable = self.alive[: self.n]
            if codes is not None:
                usable = usable & np.isin(self.kinds[: self.n], list(codes))
            rows = np.flatnonzero(usable)
            sims = sims[rows]
            top = top_k(sims, k)
            return self.ids[rows[top]], sims[top]
        count = k if codes is None else k * KIND_OVERFETCH
        while True:
            matches = self.graph.search(query, count, threads=1)
            ids = np.asarray(matches.keys, np.int64)
            sims = 1.0 - np.asarray(matches.distances, np.float32)  # inner-product distance is 1 - cosine
            if codes is not None:
                wanted = np.fromiter((self.kind_of.get(i, -1) in codes for i in ids.tolist()), bool, len(ids))
                ids, sims = ids[wanted], sims[wanted]
            if len(ids) >= k or count >= len(self.kind_of):
                return ids[:k], sims[:k]
            count *= 4

    def maintain(self, threshold: int, graph_options: dict[str, int], threads: int) -> None:
        """Build the graph when the partition outgrows a full scan; go back to a matrix when it has
        shrunk well below that; compact the matrix when half of it is dead."""
        live = len(self.kind_of)
        if self.graph is None and live >= threshold:
            keep = np.flatnonzero(self.alive[: self.n])
            self.graph = Index(
                ndim=self.dim,
                metric="ip",
                dtype="f32",
                connectivity=graph_options["connectivity"],
                expansion_add=graph_options["expansion_add"],
                expansion_search=graph_options["expansion_search"],
            )
            self.graph.add(self.ids[keep], self.vecs[keep], threads=threads)
            self._clear_matrix()
        elif self.graph is not None and live < threshold * SHRINK_SHARE:
            ids = np.fromiter(self.kind_of, np.int64, len(self.kind_of))
            rows = cast(tuple[np.ndarray, ...], self.graph.get(ids.astype(np.uint64)))  # one per key: all held
            vectors = np.vstack(rows).astype(np.float32, copy=False)
            self.graph = None
            self._clear_matrix()
            kinds = np.asarray([self.kind_of[i] for i in ids.tolist()], np.int8)
            self.kind_of.clear()
            self.append(ids, kinds, vectors, threads)
        elif self.graph is None and self.n > 64 and 2 * live < self.n:
            keep = np.flatnonzero(self.alive[: self.n])
            self.ids, self.kinds, self.vecs = self.ids[keep], self.kinds[keep], self.vecs[keep]
            self.n = len(keep)
            self.alive = np.ones(self.n, bool)

    def _clear_matrix(self) -> None:
        self.n = 0
        self.ids = np.empty(0, np.int64)
        self.kinds = np.empty(0, np.int8)
        self.alive = np.empty(0, bool)
        self.vecs = np.empty((0, self.dim), np.float32)
