"""The vector index on its own, past the size where it uses inverted lists: visibility partitions,
recall, and changes that follow commits and rollbacks."""

from __future__ import annotations

import numpy as np
import pytest

from db.session import Database
from db.vector_index import VectorIndex
from db.visibility import Audience

T1, T2 = "T0001", "T0002"


# --- the index on its own, past the size where it uses inverted lists ----------------------------


class Item:
    def __init__(self, workspace_id: str, channel_id: str, channel_type: str, kind: str = "fact") -> None:
        self.workspace_id, self.channel_id, self.channel_type, self.kind = workspace_id, channel_id, channel_type, kind


def unit_vectors(rng: np.random.Generator, count: int, dim: int = 32) -> np.ndarray:
    # Clustered, like text embeddings, so inverted lists have something to find.
    centres = rng.normal(size=(20, dim))
    vectors = centres[rng.integers(0, 20, count)] + 0.3 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_inverted_lists_respect_visibility_and_stay_in_step() -> None:
    rng = np.random.default_rng(1)
    index = VectorIndex(model="toy", ivf_threshold=200, probe_fraction=1.0)
    vectors = unit_vectors(rng, 3000)
    places = [Item(T1, "C1", "channel")] * 2000 + [Item(T1, "D1", "im")] * 500 + [Item(T2, "C1", "channel")] * 500
    index.add(list(range(1, 3001)), places, vectors)
    exact_public = vectors[:2000]
    for query in vectors[::97]:
        found = index.search(Audience(T1, "C5"), query, k=10)
        expected = np.argsort(-(exact_public @ query))[:10] + 1
        # Probing every list is exact: same neighbours as a full scan of what this audience may see.
        assert [memory_id for memory_id, _ in found] == expected.tolist()
        assert all(memory_id <= 2000 for memory_id, _ in index.search(Audience(T1, "D2"), query, k=50))
        assert all(memory_id <= 2500 for memory_id, _ in index.search(Audience(T1, "D1"), query, k=50))
    assert index.remove(range(1, 1001)) == 1000
    index.add([5000], [Item(T1, "C1", "channel")], vectors[:1])
    found = index.search(Audience(T1, "C1"), vectors[0], k=3)
    assert found[0] == (5000, pytest.approx(1.0, abs=1e-5))
    assert all(memory_id > 1000 for memory_id, _ in found)
    assert len(index) == 2001


def test_probing_a_few_lists_keeps_recall_high() -> None:
    rng = np.random.default_rng(2)
    index = VectorIndex(model="toy", ivf_threshold=1000)
    vectors = unit_vectors(rng, 20_000, dim=64)
    index.add(list(range(20_000)), [Item(T1, "C1", "channel")] * 20_000, vectors)
    # Questions land near what answers them: stored vectors, moved a little.
    queries = vectors[rng.integers(0, 20_000, 200)] + 0.2 * rng.normal(size=(200, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    recall = 0.0
    for query in queries:
        exact = set(np.argsort(-(vectors @ query))[:10].tolist())
        recall += len(exact & {memory_id for memory_id, _ in index.search(Audience(T1, "C1"), query, k=10)}) / 10
    assert recall / len(queries) > 0.95


def test_inverted_lists_follow_commits_and_rollbacks(db: Database) -> None:
    rng = np.random.default_rng(3)
    index = VectorIndex(model="toy", ivf_threshold=100)
    vectors = unit_vectors(rng, 300)
    kinds = ["fact", "correction", "turn"]
    places = [Item(T1, "C1", "channel", kinds[i % 3]) for i in range(300)]
    index.add(list(range(1, 301)), places, vectors)
    assert index.uses_lists((T1, None))
    with pytest.raises(RuntimeError), db.session() as session:
        index.remove_on_commit(session, [1, 2, 3])
        index.add_on_commit(session, [999], [Item(T1, "C1", "channel")], vectors[:1])
        raise RuntimeError("the handler failed")
    assert all(memory_id in index for memory_id in (1, 2, 3)) and 999 not in index
    with db.session() as session:
        index.remove_on_commit(session, [1, 2, 3])
    assert not any(memory_id in index for memory_id in (1, 2, 3)) and len(index) == 297
    found = index.search(Audience(T1, "C1"), vectors[3], k=10, kinds={"correction"})
    assert len(found) == 10 and all(memory_id % 3 == 2 for memory_id, _ in found)
    # Shrunk well below the threshold, the partition is a plain matrix again, with the same contents.
    assert index.remove(range(4, 281)) == 277
    assert not index.uses_lists((T1, None)) and len(index) == 20
    found = index.search(Audience(T1, "C1"), vectors[289], k=1)
    assert found[0] == (290, pytest.approx(1.0, abs=1e-5))
