"""Digests of a busy week: Ember's map-reduce beside two common ways of doing it, in one run.

    python -m bench.digest                  # 2,000 messages, a 2,048-token window, packaged SmolLM2, CPU
    python -m bench.digest --quick          # 80 messages, a 1,024-token window, short replies
    python -m bench.digest --messages N --context N --data-dir DIR --show

The channel (bench/digest_world.py) is a seeded week: threads, top-level chatter, and 25 planted items
(decisions with their outcome, actions with an owner, questions left open), each with key words used
nowhere else. All three systems see the same numbered, redacted messages, are asked with the same
instruction (Ember's tagged notes with one worked example) and run on the same engine, so the rows
differ only in how the week is fitted into the window:

  ember  the map-reduce digest (handlers/qa/digest.py): every message in one map prompt, all map prompts
         batched, their notes reduced into one digest; references the model was not given are dropped
  A      one prompt holding the newest messages that fit the window (what a single-call bot does)
  B      a summary of each part, concatenated, with no reduce step and no reference check (what
         slack-summarizer does). Its parts and prompts are exactly Ember's map step, so B's replies are
         Ember's map replies, recorded as they came back, and its time is that of Ember's map step.

Columns: wall time; model calls; prompt and completion tokens; messages the model saw; planted items
covered (one bullet holding two of the item's key words); bullets that link at least one message the
call was shown, of all bullets; invented links, i.e. references to messages the call was never shown
(for Ember, what is left after dropping them; the number dropped is printed below the table). For A
and B every line they write counts towards coverage, linked or not, as it would be posted; for Ember,
the bullets it posts, every one of them linked.

On two idle CPU cores --quick takes about a minute. The default run is dominated by its map step (29
parts of 2,048 tokens), and on CPU the engine gains little from batching long prompts, so its time grows
with messages times reply tokens; a GPU engine is where batching the map step pays.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench import digest_world
from bench.digest_world import Planted, World
from handlers.qa.digest import (
    MAP_SYSTEM,
    Digest,
    Numbered,
    Summariser,
    map_messages,
    number_messages,
    parse_notes,
    render_messages,
)
from models import loading
from models.base import Completion, Message, TokenStream, Tools, drain
from models.engine import Engine, EngineConfig

TITLE = "#platform"
REFS = re.compile(r"\[[^\]]*\]|\(\s*\d[\d,;\s]*\)")
SHOWN = re.compile(r"^\W*\[(\d+)\]", re.M)


@dataclass(frozen=True)
class Settings:
    messages: int
    context: int
    note_tokens: int
    digest_tokens: int
    kv_cache_tokens: int = 0  # 0: the engine's default, as Ember runs

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig(kv_cache_tokens=self.kv_cache_tokens) if self.kv_cache_tokens else EngineConfig()


FULL = Settings(messages=2000, context=2048, note_tokens=64, digest_tokens=256)
QUICK = Settings(messages=80, context=1024, note_tokens=48, digest_tokens=96)


@dataclass(frozen=True)
class Row:
    system: str
    seconds: float
    prompts: int
    prompt_tokens: int
    completion_tokens: int
    saw: int
    covered: int
    linked: int
    bullets: int
    invented: int

    def line(self, total: int, planted: int) -> str:
        return (
            f"{self.system:<24} {self.seconds:8.1f} {self.prompts:7d} {self.prompt_tokens:10,d} "
            f"{self.completion_tokens:9,d} {f'{self.saw}/{total}':>11} {f'{self.covered}/{planted}':>9} "
            f"{f'{self.linked}/{self.bullets}':>9} {self.invented:8d}"
        )


HEADER = (
    f"{'system':<24} {'time s':>8} {'prompts':>7} {'prompt tok':>10} {'compl tok':>9} {'saw':>11} "
    f"{'covered':>9} {'linked':>9} {'invented':>8}"
)


@dataclass(frozen=True)
class Call:
    messages: list[Message]
    completion: Completion
    finished: float  # perf_counter when its reply had been read to the end


class RecordedStream:
    def __init__(self, inner: TokenStream, messages: list[Message], calls: list[Call]) -> None:
        self.inner, self.messages, self.calls = inner, messages, calls

    def __iter__(self) -> Iterator[str]:
        yield from self.inner
        self.calls.append(Call(self.messages, self.inner.completion, time.perf_counter()))

    def cancel(self) -> None:
        self.inner.cancel()

    @property
    def completion(self) -> Completion:
        return self.inner.completion


class Recorder:
    """The engine, keeping every call's prompt and reply: baseline B is Ember's map step, read back."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[Call] = []

    @property
    def version(self) -> str:
        return self.engine.version

    @property
    def context_window(self) -> int:
        return self.engine.context_window

    @property
    def supports_tools(self) -> bool:
        return self.engine.supports_tools

    @property
    def queue_depth(self) -> int:
        return self.engine.queue_depth

    def count_tokens(self, messages: Sequence[Message], *, tools: Tools = None) -> int:
        return self.engine.count_tokens(messages, tools=tools)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> RecordedStream:
        inner = self.engine.stream(messages, max_new_tokens=max_new_tokens, stop=stop, timeout=timeout, tools=tools)
        return RecordedStream(inner, [dict(m) for m in messages], self.calls)

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Tools = None,
    ) -> Completion:
        return drain(self.stream(messages, max_new_tokens=max_new_tokens, stop=stop, timeout=timeout, tools=tools))

    def swap(self, location: str, *, version: str) -> None:
        self.engine.swap(location, version=version)

    def close(self) -> None:
        self.engine.close()


def covered(planted: Sequence[Planted], texts: Sequence[str]) -> int:
    return sum(any(item.covered_by(text) for text in texts) for item in planted)


def output_lines(text: str) -> list[str]:
    """What a baseline would post, one bullet a line, its [n] markers taken out (their digits are no words)."""
    return [REFS.sub(" ", line) for line in text.splitlines() if line.strip()]


def ember_row(digest: Digest, world: World) -> Row:
    bullets = digest.bullets()
    real = {m for unit in world.units for m in unit.messages}
    invented = sum(source not in real for bullet in bullets for source in bullet.sources)
    return Row(
        "ember map-reduce",
        digest.seconds,
        digest.prompts,
        digest.prompt_tokens,
        digest.completion_tokens,
        digest.messages,
        covered(world.planted, [bullet.text for bullet in bullets]),
        sum(bool(bullet.sources) for bullet in bullets),
        len(bullets),
        invented,
    )


def baseline_row(name: str, outputs: Sequence[tuple[Completion, Sequence[int]]], saw: int, world: World) -> Row:
    linked = bullets = invented = 0
    lines: list[str] = []
    for completion, shown in outputs:
        parsed = parse_notes(completion.text, shown)
        linked += len(parsed.notes)
        bullets += len(parsed.notes) + parsed.uncited
        invented += parsed.invented
        lines.extend(output_lines(completion.text))
    return Row(
        name,
        0.0,
        len(outputs),
        sum(c.prompt_tokens for c, _ in outputs),
        sum(c.completion_tokens for c, _ in outputs),
        saw,
        covered(world.planted, lines),
        linked,
        bullets,
        invented,
    )


def newest_that_fit(engine: Engine, items: Sequence[Numbered], window: int, max_new: int) -> int:
    """How many of the newest messages one prompt holds (binary search on the real rendering)."""
    low, high = 0, len(items)
    while low < high:
        middle = (low + high + 1) // 2
        tokens = engine.count_tokens(map_messages(render_messages(items[-middle:]), TITLE))
        if tokens + max_new <= window:
            low = middle
        else:
            high = middle - 1
    return low


def baseline_newest(engine: Engine, world: World, window: int, settings: Settings) -> Row:
    started = time.perf_counter()
    items = number_messages(world.units)
    kept = items[-newest_that_fit(engine, items, window, settings.digest_tokens) :]
    prompt = map_messages(render_messages(kept), TITLE)
    completion = drain(engine.stream(prompt, max_new_tokens=settings.digest_tokens))
    row = baseline_row("A: newest that fit", [(completion, [i.number for i in kept])], len(kept), world)
    return replace(row, seconds=time.perf_counter() - started)


def baseline_parts(calls: Sequence[Call], started: float, world: World) -> Row:
    """Ember's map replies as they came back, concatenated: no reduce, no reference check."""
    maps = [call for call in calls if call.messages[0]["content"] == MAP_SYSTEM]
    outputs = [(call.completion, [int(n) for n in SHOWN.findall(call.messages[-1]["content"])]) for call in maps]
    row = baseline_row("B: per part, no reduce", outputs, sum(len(shown) for _, shown in outputs), world)
    return replace(row, seconds=max(call.finished for call in maps) - started)


def progress(started: float) -> Callable[[str], None]:
    def tell(what: str) -> None:
        print(f"  [{time.perf_counter() - started:6.1f} s] {what}", file=sys.stderr, flush=True)

    return tell


def show(digest: Digest) -> None:
    for section, bullets in digest.sections.items():
        print(f"\n{section}")
        for bullet in bullets:
            owner = f" (owner: {bullet.owner})" if bullet.owner else ""
            cited = ", ".join(f"{m.author}: {m.text[:40]}" for m in bullet.sources[:2])
            print(f"  - {bullet.text}{owner}  <- {cited}")


def run(settings: Settings, data_dir: Path, *, show_digest: bool) -> None:
    world = digest_world.build(settings.messages)
    source = loading.resolve("default", data_dir)
    engine = Engine.load(source, device="cpu", config=settings.engine)
    recorder = Recorder(engine)
    try:
        drain(engine.stream([{"role": "user", "content": "hi"}], max_new_tokens=2))  # first-call set-up, unmeasured
        summariser = Summariser(
            recorder,
            note_tokens=settings.note_tokens,
            digest_tokens=settings.digest_tokens,
            context_tokens=settings.context,
        )
        window = summariser.window
        _describe(world, source.version, window, engine, settings)
        started = time.perf_counter()
        tell = progress(started)
        tell("ember: map-reduce (baseline B is its map step)")
        digest = summariser.summarise(world.units, title=TITLE, progress=tell)
        tell("baseline A: the newest messages that fit")
        newest = baseline_newest(engine, world, window, settings)
        tell("done")
    finally:
        engine.close()
    rows = (ember_row(digest, world), newest, baseline_parts(recorder.calls, started, world))
    print(f"\n{HEADER}")
    for row in rows:
        print(row.line(world.messages, len(world.planted)))
    print(
        f"\nember dropped {digest.invented_refs} invented references and {digest.uncited} bullets left without a "
        f"source; {digest.parts} parts, {digest.rounds} reduce round(s), {digest.cut_messages} message(s) cut, "
        f"largest call {digest.largest_prompt} of {window} tokens"
    )
    if show_digest:
        show(digest)


def _describe(world: World, version: str, window: int, engine: Engine, settings: Settings) -> None:
    kinds = {kind: sum(p.kind == kind for p in world.planted) for kind in ("decision", "action", "question")}
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), CPU")
    print(f"model: {version} (packaged), window {window} tokens (the model's own: {engine.context_window})")
    print(
        f"channel: {world.messages:,} messages, {world.threads} threads, {len(world.units)} units; "
        f"{len(world.planted)} planted items ({kinds['decision']} decisions, {kinds['action']} actions, "
        f"{kinds['question']} open questions)"
    )
    print(
        f"replies: notes {settings.note_tokens} tokens per part, digest {settings.digest_tokens} tokens; "
        f"KV cache {settings.engine.kv_cache_tokens} tokens"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK.messages} messages, a {QUICK.context}-token window, shorter replies",
    )
    parser.add_argument("--messages", type=int, help=f"messages in the week (default {FULL.messages})")
    parser.add_argument("--context", type=int, help=f"cap on the window, in tokens (default {FULL.context})")
    parser.add_argument("--note-tokens", type=int, help="reply tokens per map part (and per baseline B part)")
    parser.add_argument("--digest-tokens", type=int, help="reply tokens of the digest (and of baseline A)")
    parser.add_argument("--kv-cache", type=int, default=0, help="engine KV cache tokens (default: its own)")
    parser.add_argument("--data-dir", type=Path, help="where the converted model is cached (default: a temp dir)")
    parser.add_argument("--show", action="store_true", help="print Ember's digest after the table")
    args = parser.parse_args()
    base = QUICK if args.quick else FULL
    settings = Settings(
        messages=args.messages or base.messages,
        context=args.context or base.context,
        note_tokens=args.note_tokens or base.note_tokens,
        digest_tokens=args.digest_tokens or base.digest_tokens,
        kv_cache_tokens=args.kv_cache,
    )
    if args.data_dir is not None:
        run(settings, args.data_dir, show_digest=args.show)
        return
    with tempfile.TemporaryDirectory() as scratch:
        run(settings, Path(scratch), show_digest=args.show)


if __name__ == "__main__":
    main()
