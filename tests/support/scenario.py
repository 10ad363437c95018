"""Helpers for scenario tests: what a person would look at in Slack and in Ember's database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playground import LocalSlack

BOT_ID = "BBOT"


def turns(data_dir: Path, *, at_least: int = 0, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The stored turns, waiting until there are `at_least` (a turn is stored once its answer is posted)."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(data_dir / "ember.db") as connection:
            connection.row_factory = sqlite3.Row
            rows = [dict(row) for row in connection.execute("SELECT * FROM turns ORDER BY id")]
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def replies(slack: LocalSlack, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
    """Ember's messages in a thread (or, without thread_ts, anywhere in the channel), oldest first."""
    return [
        dict(message)
        for message in slack.messages(channel, thread_ts)
        if message.get("bot_id") == BOT_ID and message.get("ts") != thread_ts
    ]


def answered(
    slack: LocalSlack, channel: str, thread_ts: str, count: int = 1, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Wait for `count` of Ember's replies in the thread whose streams have finished; return them all."""
    deadline = time.monotonic() + timeout
    while True:
        # Both reads under the workspace's lock: a stream that stops between them would otherwise be
        # taken as finished with the text it had before its last append.
        with slack.workspace.lock:
            streaming = slack.workspace.streaming
            done = [m for m in replies(slack, channel, thread_ts) if (channel, m["ts"]) not in streaming]
        if len(done) >= count:
            return done
        assert time.monotonic() < deadline, f"no answer in thread {thread_ts}: {slack.calls}"
        time.sleep(0.05)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "the condition") -> None:
    """Poll until `condition()` holds (events are handled after their ack, so effects come later)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
