"""The nightly job: a real APScheduler cron trigger starts a real training process, once."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

from bot.settings import Settings
from playground import LocalSlack
from tests.conftest import Bots


def test_the_scheduled_job_fires_from_its_cron_trigger_once_and_reports(
    bots: Bots, bot_settings: Settings, slack: LocalSlack
) -> None:
    reports = slack.add_channel("ember-reports")
    at = datetime.now(UTC) + timedelta(seconds=6)
    cron = f"{at.second} {at.minute} {at.hour} * * *"  # once a day, a few seconds from now
    bot = bots.start(scheduler=True, train_cron=cron, timezone="UTC", train_min_examples=5, report_channel=reports)
    assert bot.scheduler is not None
    assert bot.scheduler.next_run() is not None

    runs = _wait_for_runs(bot_settings, count=1, timeout=240)
    time.sleep(3)  # a second firing would have started by now
    runs = _runs(bot_settings)
    assert len(runs) == 1
    assert runs[0][0] == "skipped", "no feedback yet: the run starts, counts, and skips training"
    with sqlite3.connect(bot_settings.data_dir / "ember.db") as connection:
        [(job_id,)] = connection.execute("SELECT id FROM apscheduler_jobs").fetchall()
    assert job_id == "nightly-training", "the schedule is kept in the database"
    assert bot.engine.version == "tiny-llama", "nothing was promoted, nothing swapped"

    # The report follows the swap check, in the scheduler's thread, just after the run ends.
    slack.wait_for("chat.postMessage", lambda call: call.args.get("channel") == reports, timeout=30)
    [report] = slack.messages(reports)
    assert report["text"].startswith("*Training run 1: skipped* (0 examples, fewer than the minimum of 5)")
    assert "*Training data:* 0 examples (0 desirable, 0 undesirable)" in report["text"]
    assert report["text"].endswith("*Now serving:* `tiny-llama`")
    bot.report_training()
    assert len(slack.messages(reports)) == 1, "a run is reported once"


def test_a_bad_schedule_or_zone_names_the_setting(bot_settings: Settings) -> None:
    from bot.settings import SettingsError, load_settings

    for name, value in (("train_cron", "every night"), ("timezone", "Mars/Olympus")):
        try:
            load_settings(**{name: value})
        except SettingsError as exc:
            assert f"EMBER_{name.upper()} is invalid" in str(exc)
        else:
            raise AssertionError(f"{name}={value!r} was accepted")


def _runs(settings: Settings) -> list[tuple[str]]:
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        return connection.execute("SELECT status FROM training_runs ORDER BY id").fetchall()


def _wait_for_runs(settings: Settings, *, count: int, timeout: float) -> list[tuple[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(settings)
        if len(runs) >= count and all(status != "running" for (status,) in runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"the job did not run: {_runs(settings)}")
