"""The resident engine: one model per process, loaded once, answering until closed.

Lifecycle: `Engine.load(...)` (or `Engine(model, tokenizer, ...)` with weights you built), then
`generate(...)` from any thread, then `close()`. Requests are served one at a time for now.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from models import loading
from models.prompt import FittedPrompt, Message, fit

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    text: str
    model_version: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    prompt: FittedPrompt


class EngineClosed(RuntimeError):
    pass


class Engine:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        version: str,
        device: str = "cpu",
        max_context_tokens: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        self.device = device
        model_window = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.context_window = min(model_window, max_context_tokens) if max_context_tokens else model_window
        self._lock = threading.Lock()
        self._closed = False
        self.queue_depth = 0

    @classmethod
    def load(cls, source: loading.ModelSource, *, device: str = "auto", max_context_tokens: int = 0) -> Engine:
        started = time.perf_counter()
        model, tokenizer, resolved = loading.load(source, device)
        log.info("loaded model %s on %s in %.1f s", source.version, resolved, time.perf_counter() - started)
        return cls(model, tokenizer, version=source.version, device=resolved, max_context_tokens=max_context_tokens)

    def generate(self, messages: Sequence[Message], *, max_new_tokens: int) -> Completion:
        """Greedy answer to the last message, the conversation fitted to the context window."""
        import torch

        budget = self.context_window - max_new_tokens
        if budget <= 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room in a {self.context_window}-token window")
        prompt = fit(self.tokenizer, messages, budget)
        self.queue_depth += 1
        try:
            with self._lock:
                if self._closed:
                    raise EngineClosed("the engine is closed")
                started = time.perf_counter()
                input_ids = torch.tensor([prompt.input_ids], device=self.device)
                with torch.inference_mode():
                    output = cast(Any, self.model).generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=self._pad_token_id(),
                        **self._generation_overrides(),
                    )
                seconds = time.perf_counter() - started
        finally:
            self.queue_depth -= 1
        new_tokens = output[0, len(prompt.input_ids) :].tolist()
        text = str(self.tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()
        return Completion(text, self.version, len(prompt.input_ids), len(new_tokens), seconds, prompt)

    def _pad_token_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else self.tokenizer.eos_token_id

    def _generation_overrides(self) -> dict[str, Any]:
        # A model saved without sampling settings would inherit transformers' temperature warnings.
        return {"temperature": None, "top_p": None, "top_k": None}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            del self.model
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover - torch is a dependency
                pass
