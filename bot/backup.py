"""`ember db backup PATH` and `ember db restore PATH`: everything Ember has learnt, in one folder.

A backup holds the SQLite database, copied with SQLite's online backup API (consistent while the bot
answers and writes), the fine-tuned model versions the registry points to, and a manifest. A restore
goes into a data directory that has no database yet, and points the registry at the versions' new
home. PostgreSQL is backed up with its own tools (`pg_dump`; see the README).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.settings import Settings, SettingsError
from db import Database
from db.schema import utcnow

DATABASE = "ember.db"
MANIFEST = "manifest.json"
VERSIONS = Path("models") / "versions"
COUNTED = ("turns", "votes", "memories", "model_versions", "training_runs")
PAGES_PER_STEP = 256  # the writer waits at most this many pages' copy for the backup's lock


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    versions: int

    def describe(self) -> str:
        counted = ", ".join(f"{n} {table.replace('_', ' ')}" for table, n in self.counts.items())
        return f"{counted}; {self.versions} model version folder(s)"


def _sqlite_file(settings: Settings) -> Path:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise SettingsError(
            "EMBER_DATABASE_URL is not a SQLite file: back a PostgreSQL database up with pg_dump "
            "(pg_dump --format=custom --file ember.dump DBNAME) and restore it with pg_restore."
        )
    return Path(url.database)


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return {table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in COUNTED}


def backup(settings: Settings, target: Path, say: Callable[[str], None] = print) -> Summary:
    source = _sqlite_file(settings)
    if not source.is_file():
        raise SettingsError(f"there is no database at {source} to back up: check EMBER_DATA_DIR")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SettingsError(f"{target} is not an empty folder: name a new one to back up into")
    target.mkdir(parents=True, exist_ok=True)

    def progress(_status: int, remaining: int, total: int) -> None:
        say(f"database: {total - remaining} of {total} pages copied")

    with sqlite3.connect(source) as live, sqlite3.connect(target / DATABASE) as copy:
        live.backup(copy, pages=PAGES_PER_STEP, progress=progress)
    copy.close()
    live.close()
    versions = settings.data_dir / VERSIONS
    copied = 0
    if versions.is_dir():
        for folder in sorted(p for p in versions.iterdir() if p.is_dir()):
            shutil.copytree(folder, target / VERSIONS / folder.name)
            copied += 1
            say(f"model version {folder.name} copied")
    summary = Summary(_counts(target / DATABASE), copied)
    manifest = {
        "created_at": utcnow().isoformat(),
        "data_dir": str(settings.data_dir.resolve()),
        "counts": summary.counts,
        "versions": copied,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return summary


def restore(settings: Settings, source: Path, say: Callable[[str], None] = print) -> Summary:
    destination = _sqlite_file(settings)
    manifest_path = source / MANIFEST
    if not manifest_path.is_file() or not (source / DATABASE).is_file():
        raise SettingsError(f"{source} is not an Ember backup (it has no {MANIFEST} or {DATABASE})")
    if destination.exists():
        raise SettingsError(
            f"{destination} already holds a database: restore into an empty data directory "
            "(set EMBER_DATA_DIR to a new folder), or move that file away first"
        )
    manifest = json.loads(manifest_path.read_text())
    destination.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source / DATABASE) as backed_up, sqlite3.connect(destination) as restored:
        backed_up.backup(restored)
    backed_up.close()
    restored.close()
    say(f"database restored to {destination}")
    copied = 0
    if (source / VERSIONS).is_dir():
        for folder in sorted(p for p in (source / VERSIONS).iterdir() if p.is_dir()):
            shutil.copytree(folder, settings.data_dir / VERSIONS / folder.name, dirs_exist_ok=True)
            copied += 1
    # The registry names each version's folder by absolute path: point it at the new data directory.
    old, new = Path(manifest["data_dir"]) / VERSIONS, (settings.data_dir / VERSIONS).resolve()
    with sqlite3.connect(destination) as connection:
        rows = connection.execute("SELECT version, path FROM model_versions").fetchall()
        for version, path in rows:
            if Path(path).is_relative_to(old):
                connection.execute(
                    "UPDATE model_versions SET path = ? WHERE version = ?",
                    (str(new / Path(path).relative_to(old)), version),
                )
    connection.close()
    database = Database(settings.resolved_database_url)
    try:
        database.upgrade()  # a backup from an older Ember gets today's schema
    finally:
        database.close()
    return Summary(_counts(destination), copied)
