"""How Ember's ack and memory hold up under load: a real `ember run` beside a bare Bolt app that only acks.

    python -m bench.load [--burst 100] [--rate 20] [--seconds 60] [--quick]

Two loads, each sent to both bots over HTTP (Events API mode): `--burst` mentions posted at once, then
`--rate` mentions a second for `--seconds`. Ember is `ember run` in its own process with a tiny model,
against the local Slack-compatible workspace; each mention should get exactly one answer in its thread,
so the benchmark waits (a bounded time) for the queue to drain and counts them. The baseline is a bare
slack_bolt App on the same server (waitress, 8 threads) whose listener does nothing: the floor for an
ack on this machine. The load comes from a process of its own, so the workspace serving Ember's Web API
calls does not slow the sender's clock. Resident memory is read from each bot's process.

Goal: ack p99 under 100 ms at 100 at once; memory flat over the sustained run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load_bots import BOT_ID, BOT_USER, TOKEN, BotProcess, running, serve_baseline, start_baseline, start_ember
from bench.load_send import Ack, _ignore_interrupts, send_at_once, send_steadily
from handlers.slack.feedback import FEEDBACK_ACTION
from playground import LocalSlack

GOAL_P99_MS = 100.0
# Growth of resident memory over the sustained run still called flat (allocator noise, warm caches).
FLAT_WITHIN = 0.05
CHANNELS = 10
PEOPLE = 20


# --- what is measured -------------------------------------------------------------------------------


@dataclass
class Mentions:
    """Mentions posted in the workspace, and the envelopes Slack would send for them."""

    envelopes: list[dict[str, Any]]

    @property
    def threads(self) -> list[tuple[str, str]]:
        return [(e["event"]["channel"], e["event"]["ts"]) for e in self.envelopes]


@dataclass
class LoadResult:
    name: str
    acks: list[Ack]
    answered_once: int | None = None
    duplicates: int | None = None
    drained_s: float | None = None

    @property
    def sent(self) -> int:
        return len(self.acks)

    @property
    def failed(self) -> int:
        return sum(ack.status != 200 for ack in self.acks)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(ack.seconds for ack in self.acks)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(ack.seconds for ack in self.acks) * 1000

    @property
    def rate(self) -> float:
        """Mentions a second as actually sent."""
        last = max(ack.sent_at for ack in self.acks)
        return (len(self.acks) - 1) / last if last > 0 else float("inf")


@dataclass
class BotResult:
    name: str
    burst: LoadResult
    steady: LoadResult
    rss_start: float
    rss_steady_start: float
    rss_steady_end: float
    rss_steady_peak: float
    rss_drained: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def steady_growth(self) -> float:
        return self.rss_steady_end - self.rss_steady_start


@dataclass
class Results:
    ember: BotResult
    baseline: BotResult
    table: str


class Bench:
    def __init__(self, slack: LocalSlack, sender: Any, args: argparse.Namespace) -> None:
        self.slack = slack
        self.sender = sender  # a one-process multiprocessing pool
        self.args = args
        self.people = [slack.add_user(f"person{n}") for n in range(PEOPLE)]
        self._channels = 0

    def mentions(self, count: int) -> Mentions:
        """`count` mentions spread over fresh channels, each the start of its own thread."""
        channels = [self.slack.add_channel(f"load-{self._channels + n}") for n in range(CHANNELS)]
        self._channels += CHANNELS
        return Mentions(
            [
                self.slack.mention(
                    channels[n % CHANNELS], self.people[n % PEOPLE], f"question {n}: what is the deploy status?"
                )
                for n in range(count)
            ]
        )

    def run(self, bot: BotProcess, name: str, *, answers: bool) -> BotResult:
        rss_start = bot.rss_mib()
        burst = self.mentions(self.args.burst)
        burst_result = LoadResult("burst", self.sender.apply(send_at_once, (bot.url, burst.envelopes)))
        if answers:
            burst_result.drained_s = self.drain(bot, burst)
        steady = self.mentions(round(self.args.rate * self.args.seconds))
        rss_steady_start = bot.rss_mib()
        pending = self.sender.apply_async(send_steadily, (bot.url, steady.envelopes, self.args.rate))
        peak = rss_steady_start
        while not pending.ready():
            pending.wait(0.5)
            peak = max(peak, bot.rss_mib())
        rss_steady_end = bot.rss_mib()
        steady_result = LoadResult("steady", pending.get())
        result = BotResult(
            name,
            burst_result,
            steady_result,
            rss_start,
            rss_steady_start,
            rss_steady_end,
            max(peak, rss_steady_end),
        )
        if answers:
            steady_result.drained_s = self.drain(bot, steady)
            result.rss_drained = bot.rss_mib()
            # Late duplicates (a redelivery answered twice) would show up after the drain.
            time.sleep(self.args.grace)
            for load, mentions in ((burst_result, burst), (steady_result, steady)):
                load.answered_once, load.duplicates = self.count_answers(mentions)
        return result

    def answers_in(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.slack.messages(channel, ts) if m.get("bot_id") == BOT_ID and m.get("ts") != ts]

    def count_answers(self, mentions: Mentions) -> tuple[int, int]:
        """(threads with exactly one answer, and it finished; threads with more than one answer)."""
        once = twice = 0
        for channel, ts in mentions.threads:
            answers = self.answers_in(channel, ts)
            once += len(answers) == 1 and FEEDBACK_ACTION in str(answers[0].get("blocks"))
            twice += len(answers) > 1
        return once, twice

    def drain(self, bot: BotProcess, mentions: Mentions) -> float:
        """Seconds until every mention has a finished answer and the model's queue is empty; gives up when
        nothing more is answered for `--patience` seconds."""
        began = time.monotonic()
        best, progressed = -1, began
        while True:
            done = sum(
                any(FEEDBACK_ACTION in str(m.get("blocks")) for m in self.answers_in(channel, ts))
                for channel, ts in mentions.threads
            )
            health = bot.health() or {}
            if done == len(mentions.envelopes) and health.get("queue_depth", 0) == 0:
                return time.monotonic() - began
            if done > best:
                best, progressed = done, time.monotonic()
            if time.monotonic() - progressed > self.args.patience or bot.process.poll() is not None:
                return time.monotonic() - began
            time.sleep(0.5)


# --- the table -------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _of(count: int | None, total: int) -> str:
    return "-" if count is None else f"{count}/{total}"


def table(ember: BotResult, baseline: BotResult, args: argparse.Namespace, machine: str) -> str:
    left, right = "ember (ember run)", "baseline (bare Bolt)"
    lines = [
        f"machine: {machine}; model: tiny Llama (2 layers, hidden 32), {args.tokens} new tokens an answer, "
        f"memory {'on' if args.memory else 'off'}; HTTP (Events API) against the local Slack workspace",
        "",
        f"{'':<40} {left:>22} {right:>22}",
    ]

    def row(label: str, show: Callable[[BotResult], str]) -> None:
        lines.append(f"{label:<40} {show(ember):>22} {show(baseline):>22}")

    lines += _load_rows(f"{args.burst} mentions at once", ember.burst, baseline.burst)
    lines += _load_rows(f"{args.rate:g} mentions/s for {args.seconds:g} s", ember.steady, baseline.steady)
    lines.append("resident memory (RSS MiB)")
    row("  at start", lambda r: f"{r.rss_start:.0f}")
    row("  sustained run: start", lambda r: f"{r.rss_steady_start:.0f}")
    row("  sustained run: end", lambda r: f"{r.rss_steady_end:.0f}")
    row("  sustained run: peak", lambda r: f"{r.rss_steady_peak:.0f}")
    row("  sustained run: growth", lambda r: f"{r.steady_growth:+.0f} ({r.steady_growth / r.rss_steady_start:+.1%})")
    row("  after the queue drained", lambda r: "-" if r.rss_drained is None else f"{r.rss_drained:.0f}")
    row("warnings and errors in the bot's log", lambda r: str(len(r.errors)))
    p99 = ember.burst.percentile_ms(0.99)
    growth = ember.steady_growth / ember.rss_steady_start
    lines += [
        "",
        f"goal: ack p99 under {GOAL_P99_MS:.0f} ms at 100 at once; memory flat over the sustained run",
        f"ember: ack p99 {p99:.1f} ms at {args.burst} at once ({'met' if p99 < GOAL_P99_MS else 'missed'}); "
        f"memory {growth:+.1%} over the sustained run "
        f"({'flat' if abs(growth) <= FLAT_WITHIN else 'not flat'}, within {FLAT_WITHIN:.0%} counts as flat)",
    ]
    return "\n".join(lines)


def _load_rows(title: str, ember: LoadResult, baseline: LoadResult) -> list[str]:
    rows: list[tuple[str, Callable[[LoadResult], str]]] = [
        ("  sent", _sent),
        ("  ack p50 ms", lambda load: _ms(load.p50_ms)),
        ("  ack p99 ms", lambda load: _ms(load.percentile_ms(0.99))),
        ("  ack max ms", lambda load: _ms(max(ack.seconds for ack in load.acks) * 1000)),
        ("  not acked with 200", lambda load: str(load.failed)),
        ("  answered exactly once", lambda load: _of(load.answered_once, load.sent)),
        ("  answered more than once", lambda load: _of(load.duplicates, load.sent)),
        ("  queue drained after (s)", lambda load: "-" if load.drained_s is None else f"{load.drained_s:.1f}"),
    ]
    return [title] + [f"{label:<40} {show(ember):>22} {show(baseline):>22}" for label, show in rows]


def _sent(load: LoadResult) -> str:
    return f"{load.sent} at {load.rate:.1f}/s" if load.name == "steady" else str(load.sent)


def complaints(output: Sequence[str]) -> list[str]:
    """The bot's log lines at WARNING and above, and tracebacks."""
    marks = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "WARNING:", "ERROR:")
    return [line.rstrip() for line in output if any(mark in line for mark in marks)]


def _kinds(lines: Sequence[str]) -> list[str]:
    """Distinct complaints, timestamps and ids left out, with how often each came."""
    counts: dict[str, int] = {}
    for line in lines:
        key = " ".join(word for word in line.split() if not any(ch.isdigit() for ch in word))
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]


# --- the command ------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=100, help="mentions posted at once")
    parser.add_argument("--rate", type=float, default=20.0, help="mentions a second in the sustained run")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run")
    parser.add_argument("--quick", action="store_true", help="a smoke check: 20 at once, then 5/s for 5 s")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens an answer")
    parser.add_argument("--memory", action="store_true", help="run Ember with day-time memory (recall) on")
    parser.add_argument(
        "--patience", type=float, default=120.0, help="seconds without a new answer before draining stops"
    )
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for late duplicates")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.burst, args.rate, args.seconds = 20, 5.0, 5.0
    if args.burst < 1 or args.rate <= 0 or args.seconds <= 0 or round(args.rate * args.seconds) < 2:
        parser.error("--burst, --rate and --seconds must be positive (and make at least 2 sustained mentions)")
    return args


def main(argv: Sequence[str] | None = None) -> Results | None:
    args = parse(argv)
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline, args.api_url)
        return None
    from transformers.utils import logging as transformers_logging

    from tests.support.models import build_tiny_model, packaged_tokenizer

    transformers_logging.disable_progress_bar()
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as scratch,
        LocalSlack(bot_token=TOKEN, bot_user_id=BOT_USER, bot_id=BOT_ID) as slack,
        spawn.Pool(1, initializer=_ignore_interrupts) as sender,
    ):
        model_dir = build_tiny_model(Path(scratch) / "tiny-llama", packaged_tokenizer())
        bench = Bench(slack, sender, args)
        with running(lambda: start_ember(Path(scratch), slack, model_dir, args)) as ember:
            ember_result = bench.run(ember, "ember", answers=True)
        ember_result.errors = complaints(ember.output)
        if ember.process.returncode != 0:
            ember_result.errors.append(f"ember run exited with {ember.process.returncode}")
        with running(lambda: start_baseline(Path(scratch), slack)) as baseline:
            baseline_result = bench.run(baseline, "baseline", answers=False)
        baseline_result.errors = complaints(baseline.output)
    machine = f"{os.cpu_count()} cores"
    text = table(ember_result, baseline_result, args, machine)
    print(text)
    for result in (ember_result, baseline_result):
        for kind in _kinds(result.errors)[:10]:
            print(f"{result.name} log: {kind}")
    return Results(ember_result, baseline_result, text)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; the bots are stopped")
