"""The conversation so far: stored turns interleaved with what Slack's thread adds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from db.schema import Turn
from handlers.qa.types import ThreadMessage


def merge_history(
    turns: Sequence[Turn], thread: Sequence[ThreadMessage], *, skip_ts: str | None
) -> list[dict[str, str]]:
    """Interleave stored turns with Slack messages the turns do not already cover, oldest first.

    Stored turns are the memory (they survive Slack's history limits and restarts); Slack's thread
    adds what other people said in between.
    """
    timed: list[tuple[float, int, dict[str, str]]] = []
    covered = {ts for turn in turns for ts in (turn.question_ts, turn.answer_ts) if ts}
    for turn in turns:
        at = _ts(turn.question_ts) if turn.question_ts else _epoch(turn.asked_at)
        timed.append((at, 0, {"role": "user", "content": turn.question}))
        timed.append((at, 1, {"role": "assistant", "content": turn.answer}))
    for message in thread:
        if message.ts in covered or message.ts == skip_ts or not message.text.strip():
            continue
        role = "assistant" if message.from_ember else "user"
        content = message.text if message.from_ember or not message.user_id else f"<@{message.user_id}>: {message.text}"
        timed.append((_ts(message.ts), 0, {"role": role, "content": content}))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in timed]


def _epoch(moment: datetime) -> float:
    # SQLite hands datetimes back without their zone; Ember stores UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _ts(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0
