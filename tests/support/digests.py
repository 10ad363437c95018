"""For digest scenarios: a model that writes notes the way an able one would, behind the real LLM
interface, and a week of seeded channel talk to summarise."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from models.base import Completion, PromptInfo, Tools
from models.prompt import render
from tests.support.scripted import Prompted, ScriptedEngine, ScriptedStream

# "[12] alice: we decided to ..." as the summariser shows messages (any indentation or reply marker).
_SHOWN = re.compile(r"^\W*\[(\d+)\]\s*([^:\n]+):\s*(.+)$", re.M)
_NOTE = re.compile(r"^\s*[-*•]?\s*(DECISION|ACTION[^:]*|QUESTION|HIGHLIGHT)\s*:.*\[\d+\].*$", re.M | re.I)
INVENTED = 9999


class CitingEngine(ScriptedEngine):
    """Notes every message that decides, assigns or asks something, citing it by its number, and adds one
    reference to a message it was never shown ([9999]), as models do; the reduce step passes notes on.

    Each request is rendered by the real chat template and counted by the real tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, window: int = 2048) -> None:
        super().__init__(tokenizer, [])
        self.window = window
        self._lock = threading.Lock()

    @property
    def context_window(self) -> int:
        return self.window

    def generate(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> Completion:
        sent = [dict(m) for m in messages]
        ids = render(self.tokenizer, sent, tools=tools)
        prompt = str(self.tokenizer.decode(ids))
        with self._lock:
            self.prompts.append(Prompted(sent, None, prompt, timeout))
        user = next((m["content"] for m in reversed(sent) if m.get("role") == "user"), "")
        text = self._notes(str(user))
        tokens = len(ids)
        assert tokens + max_new_tokens <= self.window, f"a prompt of {tokens} tokens overflows the window"
        return Completion(
            text=text,
            model_version=self.version,
            prompt_tokens=tokens,
            completion_tokens=len(self.tokenizer.encode(text, add_special_tokens=False)),
            seconds=0.0,
            prompt=PromptInfo(tokens),
        )

    def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> ScriptedStream:
        return ScriptedStream(self.generate(messages, max_new_tokens=max_new_tokens, timeout=timeout, tools=tools))

    @staticmethod
    def _notes(user: str) -> str:
        shown = _SHOWN.findall(user)
        if not shown:  # a reduce prompt: the notes go on as they are
            return "\n".join(match.group(0).strip() for match in _NOTE.finditer(user))
        notes = []
        for number, author, text in shown:
            lowered = text.lower()
            if "decided" in lowered:
                notes.append(f"DECISION: {text.strip()} [{number}]")
            elif "i will" in lowered or "i'll" in lowered:
                notes.append(f"ACTION (@{author.strip()}): {text.strip()} [{number}]")
            elif text.strip().endswith("?"):
                notes.append(f"QUESTION: {text.strip()} [{number}]")
        notes.append(f"HIGHLIGHT: the team talked a lot [{shown[0][0]}][{INVENTED}]")
        return "\n".join(notes)

    def prompt_text(self) -> str:
        with self._lock:
            return "\n".join(p.prompt for p in self.prompts)
