"""Degenerate repetition: the loop a small model falls into under greedy decoding.

"Facilities take take take take take ..." or "#event-event-event-..." ends no answer a person
reads on. `loop_start` spots a run at the end of the generated tokens that repeats one unit over
and over; the engine then ends the answer after the unit's first occurrence. Outputs without such
a run are never touched, so greedy answers that do not loop stay token-for-token the same.

A loop here is the same unit of k tokens (1 <= k <= MAX_PERIOD) repeated back to back, covering at
least three units and at least MIN_SPAN tokens: three repeats of a 3+-token phrase, or nine of a
one- or two-token word. Shorter repeats ("no, no, no") are ordinary text, and so, in the engine,
are repeats without a letter in them (digits, a table rule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MAX_PERIOD = 32
MIN_REPEATS = 3
MIN_SPAN = 9


def loop_start(
    tokens: Sequence[int], *, max_period: int = MAX_PERIOD, wordy: Callable[[Sequence[int]], bool] | None = None
) -> int | None:
    """Where the loop at the end of `tokens` begins repeating, or None if the end is not a loop.

    Returns the index just past the loop's first unit: `tokens[:index]` is the text with the loop
    said once. Checks only the end, so calling it after each new token costs O(max_period**2).
    `wordy`, given a unit, says whether it holds words: the engine passes one so that a long number
    ("1000000000000") or a Markdown table's "|---|---|---|..." is never taken for a loop.
    """
    n = len(tokens)
    for period in range(1, max_period + 1):
        span = max(MIN_REPEATS * period, MIN_SPAN)
        if span > n:
            break
        tail = n - span
        if all(tokens[i] == tokens[i - period] for i in range(tail + period, n)):
            if wordy is not None and not wordy(tokens[tail : tail + period]):
                continue
            # Walk back while the run continues, so the unit kept is the first of the run.
            start = tail
            while start > 0 and tokens[start - 1] == tokens[start - 1 + period]:
                start -= 1
            return start + period
    return None


def has_loop(
    tokens: Sequence[int], *, max_period: int = MAX_PERIOD, wordy: Callable[[Sequence[int]], bool] | None = None
) -> bool:
    """Whether a loop occurs anywhere in `tokens` (for measuring; the engine checks as it goes)."""
    return any(
        loop_start(tokens[:end], max_period=max_period, wordy=wordy) is not None
        for end in range(MIN_SPAN, len(tokens) + 1)
    )


def hold_from(tokens: Sequence[int], *, max_period: int = MAX_PERIOD) -> int:
    """Tokens from this index on repeat what came just before them, so they may yet turn out to be a
    loop's repeats: a stream holds their text back until the repetition breaks or the answer ends.

    Whatever `loop_start` later cuts at is never before this index, so nothing shown is taken back.
    Ordinary text rarely repeats itself token for token, so this holds back little or nothing.
    """
    n = len(tokens)
    hold = n
    for period in range(1, min(max_period, n - 1) + 1):
        i = n - 1
        while i - period >= 0 and tokens[i] == tokens[i - period]:
            i -= 1
        hold = min(hold, i + 1)
    return hold
