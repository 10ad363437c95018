"""The learning loop in a running bot: `ember train` promotes a version and the bot serves it, then
`ember models rollback` takes it back, while people keep asking and every question gets one answer.

Real parts throughout: the bot over HTTP against the local Slack stand-in, the `ember` command in its
own process (which starts the training process), LoRA + KTO steps on a tiny model, the registry in the
bot's SQLite file, and the bot's own model-sync job (APScheduler) that swaps the weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bot.settings import Settings
from db import Database
from playground import LocalSlack
from tests.conftest import Bots
from tests.support import scenario
from tests.support.planted import HELD, QUICK, TRAINED, add_feedback, planted_fact

ROOT = Path(__file__).resolve().parents[2]


def ember(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The `ember` command as an operator runs it on the bot's machine: same data dir, same model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBER_", "SLACK_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "EMBER_DATA_DIR": str(settings.data_dir),
        "EMBER_MODEL": settings.model,
        "EMBER_DEVICE": "cpu",
        "EMBER_TRAIN_MIN_EXAMPLES": "8",
        "EMBER_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )


class Askers:
    """People asking in threads of their own until stopped: a new question `every` seconds, but never
    more than `waiting` unanswered at once, so that a busy machine's queue does not outgrow the test."""

    def __init__(
        self, bots: Bots, slack: LocalSlack, channel: str, user: str, every: float = 0.25, waiting: int = 3
    ) -> None:
        self.bots, self.slack, self.channel, self.user, self.every = bots, slack, channel, user, every
        self.waiting = waiting
        self.asked: list[tuple[str, str]] = []  # (question, its ts)
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Askers:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def ask(self, question: str) -> str:
        envelope = self.slack.mention(self.channel, self.user, question)
        self.statuses.append(self.bots.client.send_event(envelope).status_code)
        self.asked.append((question, envelope["event"]["ts"]))
        return str(envelope["event"]["ts"])

    def _unanswered(self) -> int:
        return sum(not scenario.replies(self.slack, self.channel, ts) for _, ts in self.asked)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every):
            if self._unanswered() >= self.waiting:
                continue
            n += 1
            self.ask(f"{TRAINED[n % len(TRAINED)]} (question {n})")


def wait_for_version(url: str, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (serving := requests.get(f"{url}/healthz", timeout=10).json()["model_version"]) != version:
        assert time.monotonic() < deadline, f"still serving {serving}, not {version}"
        time.sleep(0.1)


def answered_once(
    slack: LocalSlack, channel: str, asked: list[tuple[str, str]], data_dir: Path
) -> list[dict[str, Any]]:
    """Every question has exactly one finished answer in its thread; the stored turns, oldest first."""
    for _, ts in asked:
        scenario.answered(slack, channel, ts, timeout=120)
    time.sleep(0.5)  # a second answer to any of them would have been posted by now
    for question, ts in asked:
        assert len(scenario.replies(slack, channel, ts)) == 1, f"{question!r} was not answered exactly once"
    mine = {ts for _, ts in asked}
    stored = [turn for turn in scenario.turns(data_dir) if turn["question_ts"] in mine]
    assert len(stored) == len(asked), "every answer is stored as a turn, once"
    return stored


def test_a_promoted_version_and_a_rollback_reach_the_running_bot_while_questions_keep_coming(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bot = bots.start(scheduler=True, model_sync_seconds=1, train_min_examples=8)
    base = bot.engine.version
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    database = Database(bot_settings.resolved_database_url)
    try:
        add_feedback(database, planted_fact([*TRAINED, *HELD]))  # the team told Ember the build host
    finally:
        database.close()

    overrides = [f"--{name.replace('_', '-')}={value}" for name, value in QUICK.items()]
    with Askers(bots, slack, channel, alice) as askers:
        trained = ember(bot_settings, "train", *overrides)
        assert trained.returncode == 0, trained.stdout + trained.stderr
        summary = trained.stdout.strip().splitlines()[-1]
        assert "promoted" in summary, trained.stdout
        [version] = [word for word in summary.replace(",", " ").split() if word.startswith(f"{base}-ft")]
        wait_for_version(bot.url, version)  # the bot's sync job swapped it in, nobody restarted anything
        after_promotion = askers.ask("Which machine is the build host? (after the promotion)")
        time.sleep(1.5)  # a few more questions from the stream on the new weights
        # Questions queue behind one answer worker, slower than they come on a busy machine: roll back only
        # once this one is answered, or the rollback could overtake it in the queue.
        scenario.answered(slack, channel, after_promotion, timeout=120)

        rolled_back = ember(bot_settings, "models", "rollback")
        assert rolled_back.returncode == 0, rolled_back.stderr
        assert f"{base} is active again" in rolled_back.stdout
        wait_for_version(bot.url, base)
        after_rollback = askers.ask("Which machine is the build host? (after the rollback)")
        time.sleep(1.0)

    assert askers.statuses and set(askers.statuses) == {200}, "every question was acknowledged"
    stored = answered_once(slack, channel, askers.asked, bot_settings.data_dir)
    by_ts = {turn["question_ts"]: turn for turn in stored}
    assert by_ts[after_promotion]["model_version"] == version
    assert by_ts[after_rollback]["model_version"] == base
    # One answer worker answers in order, and each answer comes from the weights it started on: the
    # versions the stream saw go base..., promoted..., base..., never back and forth.
    versions = [turn["model_version"] for turn in stored]
    runs = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert runs == [base, version, base], runs
    assert bot.metrics.swaps.labels("ok")._value.get() == 2
