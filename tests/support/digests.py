"""For digest scenarios: a model that writes notes the way an able one would, behind the real LLM
interface (each request rendered by the real chat template and counted by the real tokenizer)."""

from __future__ import annotations

import re
from typing import Any

from transformers import PreTrainedTokenizerBase

from tests.support.scripted import ReplyingEngine

# "[12] alice: we decided to ..." as the summariser shows messages (any indentation or reply marker).
_SHOWN = re.compile(r"^\W*\[(\d+)\]\s*([^:\n]+):\s*(.+)$", re.M)
_NOTE = re.compile(r"^\s*[-*•]?\s*(DECISION|ACTION[^:]*|QUESTION|HIGHLIGHT)\s*:.*\[\d+\].*$", re.M | re.I)
INVENTED = 9999


def notes(messages: list[dict[str, Any]]) -> str:
    """Notes every message that decides, assigns or asks something, citing it by its number, and adds
    one reference to a message it was never shown ([9999]), as models do; a reduce prompt's notes go
    on as they are."""
    user = str(next((m["content"] for m in reversed(messages) if m.get("role") == "user"), ""))
    shown = _SHOWN.findall(user)
    if not shown:
        return "\n".join(match.group(0).strip() for match in _NOTE.finditer(user))
    written = []
    for number, author, text in shown:
        lowered, text = text.lower(), text.strip()
        if "decided" in lowered:
            written.append(f"DECISION: {text} [{number}]")
        elif "i will" in lowered or "i'll" in lowered:
            written.append(f"ACTION (@{author.strip()}): {text} [{number}]")
        elif text.endswith("?"):
            written.append(f"QUESTION: {text} [{number}]")
    written.append(f"HIGHLIGHT: the team talked a lot [{shown[0][0]}][{INVENTED}]")
    return "\n".join(written)


class CitingEngine(ReplyingEngine):
    """A ReplyingEngine that takes notes; every call must fit its window, as on a real engine."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, window: int = 2048) -> None:
        super().__init__(tokenizer, notes, context_window=window)

    def overflowed(self) -> list[tuple[int, int]]:
        """(prompt tokens, max_new_tokens) of every call that did not fit the window."""
        return [(prompt, new) for prompt, new in self.budgets if prompt + new > self.window]

    def prompt_text(self) -> str:
        return "\n".join(p.prompt for p in self.prompts)
