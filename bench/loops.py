"""Answers that loop, with Ember's loop stop off and on, in one run.

    python -m bench.loops             # the learning benchmark's 64 paraphrases and 30 general questions
    python -m bench.loops --quick     # 32 of them, 128-token answers

Both passes run the packaged SmolLM2-135M through Ember's engine, greedy, with the bot's system prompt
and answer length (EMBER_MAX_NEW_TOKENS' default), all questions submitted at once as the bot's
workers would. A loop, as counted here, is the same unit of 3+ tokens three times in a row, or a one-
or two-token unit nine times (models/loops.py), letters or not; the engine itself leaves repeats
without a letter alone (a long number, a table rule), so those can remain in the "on" row.
"unchanged" counts the answers that do not loop with the stop off and come out token-for-token the
same with it on.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.learning import FACTS, GENERAL, SYSTEM_PROMPT
from models import loading
from models.base import Completion
from models.engine import Engine, EngineConfig
from models.loops import has_loop

MAX_NEW_TOKENS = 256  # the bot's default (EMBER_MAX_NEW_TOKENS)


def questions(quick: bool) -> list[str]:
    team = [q for fact in FACTS for q in fact.paraphrases]
    general = [q for q, _ in GENERAL]
    if quick:
        return team[::4] + general[::2]
    return team + general


def run(
    source: loading.ModelSource, asked: list[str], *, stop_loops: bool, max_new_tokens: int
) -> tuple[list[Completion], float]:
    engine = Engine.load(source, device="cpu", config=EngineConfig(stop_loops=stop_loops))
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(len(asked)) as pool:
            completions = list(
                pool.map(
                    lambda q: engine.generate(
                        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q}],
                        max_new_tokens=max_new_tokens,
                    ),
                    asked,
                )
            )
        return completions, time.perf_counter() - started
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the packaged model is converted")
    parser.add_argument("--show", action="store_true", help="print the answers that looped, before and after")
    args = parser.parse_args()
    max_new_tokens = 128 if args.quick else MAX_NEW_TOKENS
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="ember-bench-loops-"))
    source = loading.resolve(loading.DEFAULT_MODEL, data_dir)
    asked = questions(args.quick)

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), CPU")
    print(f"model: {source.version} (packaged), greedy, {max_new_tokens}-token answers, {len(asked)} questions")
    off, off_s = run(source, asked, stop_loops=False, max_new_tokens=max_new_tokens)
    on, on_s = run(source, asked, stop_loops=True, max_new_tokens=max_new_tokens)

    def looping(completions: list[Completion]) -> int:
        return sum(has_loop(c.token_ids) for c in completions)

    plain = [i for i, c in enumerate(off) if not has_loop(c.token_ids)]
    unchanged = sum(off[i].token_ids == on[i].token_ids for i in plain)
    print()
    print(f"{'loop stop':<12}{'looping':>14}{'share':>8}{'mean tokens':>13}{'time s':>9}")
    for name, completions, seconds in (("off", off, off_s), ("on (Ember)", on, on_s)):
        n = looping(completions)
        mean = sum(c.completion_tokens for c in completions) / len(completions)
        print(f"{name:<12}{f'{n}/{len(completions)}':>14}{n / len(completions):>8.1%}{mean:>13.1f}{seconds:>9.1f}")
    print(
        f"\nunchanged: {unchanged}/{len(plain)} answers that do not loop are token-for-token the same with the stop on"
    )
    if args.show:
        for i, (before, after) in enumerate(zip(off, on, strict=True)):
            if has_loop(before.token_ids):
                print(f"\n[{asked[i]}]\n  off: {before.text[:300]!r}\n  on:  {after.text!r}")


if __name__ == "__main__":
    main()
