"""`ember db backup` while the bot answers, `ember db restore` into a fresh data directory: the turns,
votes, memories and model registry are all there, and the restored registry finds its weights."""

from __future__ import annotations

import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bot.settings import Settings
from db import Database
from handlers.slack.feedback import FEEDBACK_ACTION
from models import registry
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.cli import ember
from tests.support.feedback import click
from tests.support.scenario import answered, wait_for


def rows(database: Path, query: str) -> set[tuple[object, ...]]:
    with sqlite3.connect(database) as connection:
        return set(connection.execute(query).fetchall())


TURNS = "SELECT id, question, answer FROM turns"
VOTES = "SELECT turn_id, user_id, value FROM votes"
MEMORIES = "SELECT id, kind, text FROM memories"


def test_a_backup_taken_while_the_bot_answers_restores_into_a_fresh_data_dir(
    bots: Bots, slack: LocalSlack, bot_settings: Settings, tmp_path: Path, tiny_model_dir: Path
) -> None:
    bot = bots.start(memory=False)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    mention = slack.mention(channel, alice, "What is the VPN host?")
    bots.client.send_event(mention)
    [answer] = answered(slack, channel, mention["event"]["ts"])
    assert bots.client.send_interaction(click(slack, channel, alice, answer["ts"], FEEDBACK_ACTION)).status_code == 200
    thread = mention["event"]["ts"]
    correction = slack.mention(channel, alice, "No, the VPN host is vpn.acme.internal", thread_ts=thread)
    bots.client.send_event(correction)
    live = bot_settings.data_dir / "ember.db"
    wait_for(lambda: rows(live, VOTES) and rows(live, MEMORIES), what="the vote and the correction stored")
    # A fine-tune the registry serves, with its weights in the data directory.
    weights = registry.versions_dir(bot_settings.data_dir) / "tiny-llama-ft1"
    shutil.copytree(tiny_model_dir, weights)
    with bot.db.session() as session:
        registry.add_candidate(session, version="tiny-llama-ft1", path=weights, parent="tiny-llama", metrics={})
        registry.promote(session, version="tiny-llama-ft1")
    turns, votes, memories = rows(live, TURNS), rows(live, VOTES), rows(live, MEMORIES)

    # More questions arrive while the backup runs.
    storm = [slack.mention(channel, alice, f"question {n} during the backup") for n in range(6)]
    backup_dir = tmp_path / "backup"
    with ThreadPoolExecutor(max_workers=6) as pool:
        for envelope in storm:
            pool.submit(bots.client.send_event, envelope)
        result = ember(tmp_path, "db", "backup", str(backup_dir))
    assert result.returncode == 0, result.stderr
    assert "backed up to" in result.stdout and "1 model version folder(s)" in result.stdout
    for envelope in storm:
        answered(slack, channel, envelope["event"]["ts"])
    again = ember(tmp_path, "db", "backup", str(backup_dir))
    assert again.returncode == 2 and "is not an empty folder" in again.stderr

    fresh = tmp_path / "restored"
    restored = ember(tmp_path, "db", "restore", str(backup_dir), EMBER_DATA_DIR=str(fresh))
    assert restored.returncode == 0, restored.stderr
    copy = fresh / "ember.db"
    assert turns <= rows(copy, TURNS), "every turn stored before the backup began"
    assert rows(copy, VOTES) == votes and rows(copy, MEMORIES) == memories
    with sqlite3.connect(copy) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    database = Database(f"sqlite:///{copy}")
    try:
        with database.session() as session:
            active = registry.active(session)
    finally:
        database.close()
    assert active is not None and active.version == "tiny-llama-ft1"
    assert Path(active.path).parent == registry.versions_dir(fresh).resolve()
    assert (Path(active.path) / "config.json").is_file(), "the restored registry finds its weights"

    over = ember(tmp_path, "db", "restore", str(backup_dir), EMBER_DATA_DIR=str(fresh))
    assert over.returncode == 2 and "already holds a database" in over.stderr
    assert "Traceback" not in over.stderr + again.stderr
