"""What goes into a prompt besides the conversation: remembered memories, and the redaction every
prompt passes through before a model sees it.

Models whose template cannot show tools get retrieval instead of a search tool: `rag_messages` puts
the memories found for the question into the system prompt, with markers the answer can cite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from db.redact import redact
from handlers.qa.tools import MAX_RESULT_CHARS, MemoryHitLike, format_hit, truncate

RAG_HEADER = (
    "Things you remember from earlier conversations. Use them only if they help, and cite the marker "
    "(like [m12]) of each one you use:"
)


def redacted(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages with secrets taken out of their text: the question, the thread, memories and tool
    results alike. The agent calls this before every model call, so no prompt can skip it."""
    cleaned = []
    for message in messages:
        content = message.get("content")
        cleaned.append({**message, "content": redact(content)} if isinstance(content, str) else dict(message))
    return cleaned


def rag_messages(messages: Sequence[Mapping[str, str]], hits: Sequence[MemoryHitLike]) -> list[dict[str, str]]:
    """`messages` with the retrieved memories added to the system prompt, each with its [mN] marker."""
    copied = [dict(m) for m in messages]
    if not hits:
        return copied
    block = truncate(RAG_HEADER + "\n" + "\n".join(format_hit(hit) for hit in hits), MAX_RESULT_CHARS)
    if copied and copied[0].get("role") == "system":
        copied[0]["content"] = f"{copied[0]['content']}\n\n{block}"
        return copied
    return [{"role": "system", "content": block}, *copied]


def cited_memories(text: str, hits: Sequence[MemoryHitLike]) -> list[MemoryHitLike]:
    """The hits an answer cites by marker, in the order given, so the caller can link their sources."""
    return [hit for hit in hits if f"[m{hit.memory_id}]" in text]
