"""Saving the playground's workspace to a SQLite file, so a restart keeps the conversation.

`WorkspaceStore` writes full snapshots (users, channels and their members,
every message with its thread fields and reactions, ephemerals, extra tokens,
and the id counter and ts clock) and loads one into a fresh `Workspace`.
`Autosave` is a background thread that saves about once a second while the
workspace changes, and once more when stopped.

Left out on purpose: the bot's own user and token (`Workspace.__post_init__`
makes them from the constructor's arguments), response_urls (short-lived),
and which messages are streaming (a restart ends every stream; the text so
far is kept).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .workspace import Channel, Message, User, Workspace, ts_key

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    real_name TEXT NOT NULL,
    is_bot INTEGER NOT NULL,
    bot_id TEXT,
    tz TEXT NOT NULL
);
CREATE TABLE channels (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    created INTEGER NOT NULL,
    user TEXT,
    members TEXT NOT NULL,  -- JSON list of user ids
    archived INTEGER NOT NULL
);
CREATE TABLE messages (
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    sort_key INTEGER NOT NULL,  -- ts in microseconds, for ordering
    body TEXT NOT NULL,  -- JSON of the stored message dict
    PRIMARY KEY (channel, ts)
);
CREATE INDEX messages_order ON messages (channel, sort_key);
CREATE TABLE ephemerals (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE tokens (token TEXT PRIMARY KEY, user TEXT NOT NULL);
"""
_TABLES = ("meta", "users", "channels", "messages", "ephemerals", "tokens")
# Ids minted by Workspace.new_id: one capital letter and an 8-digit counter.
_MINTED_ID = re.compile(r"^[A-Z](\d{8})$")


class StoreError(ValueError):
    """The workspace file can't be used; the message names the file and what to do."""


def _unusable(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path} is not a usable playground workspace file ({why}). "
        "Move it away (or delete it) to start with an empty workspace, or point the playground at another file."
    )


@dataclass
class _Snapshot:
    """Rows for every table, taken under the workspace lock."""

    seq: int
    meta: list[tuple[str, str]]
    users: list[tuple[Any, ...]]
    channels: list[tuple[Any, ...]]
    messages: list[tuple[str, str, int, str]]
    ephemerals: list[tuple[int, str]]
    tokens: list[tuple[str, str]]


@dataclass
class _Stored:
    """A saved snapshot, parsed."""

    next_id: int
    clock_last: int
    bot_user_id: str | None
    users: list[User]
    channels: list[Channel]
    messages: list[tuple[str, Message]]
    ephemerals: list[Message]
    tokens: list[tuple[str, str]]


def _dumps(value: Any) -> str:
    # default=str: one odd value must not stop every later save.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class WorkspaceStore:
    """A SQLite file holding one workspace snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the connection, and the order snapshots are written in
        self._snapshots = 0  # numbered under the workspace lock, so a stale one is never written last
        self._written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
        except sqlite3.Error as err:
            raise _unusable(self.path, f"cannot open it: {err}") from None
        try:
            self._check_schema()
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self) -> None:
        try:
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                with self._conn:
                    self._conn.executescript(_SCHEMA)
                    self._conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
                return
            if "meta" not in tables:
                raise _unusable(self.path, f"a SQLite database of something else, with tables {sorted(tables)}")
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as err:
            raise _unusable(self.path, f"SQLite says: {err}") from None
        version = row[0] if row else None
        if version != str(SCHEMA_VERSION):
            raise _unusable(self.path, f"schema version {version!r}, this playground reads version {SCHEMA_VERSION}")
        missing = sorted(set(_TABLES) - tables)
        if missing:
            raise _unusable(self.path, f"tables {missing} are missing")

    # -- loading ---------------------------------------------------------

    def load(self, ws: Workspace) -> bool:
        """Fill `ws`, which must hold nothing yet but its bot, from the file; False if nothing was ever saved."""
        with self._lock:
            stored = self._read()
        if stored is None:
            return False
        with ws.lock:
            extra_users = sorted(set(ws.users) - {ws.bot_user_id})
            if ws.channels or extra_users or ws.ephemerals:
                raise RuntimeError(
                    f"load {self.path} into a fresh Workspace; this one already has "
                    f"channels {sorted(ws.channels)} and users {extra_users}"
                )
            if stored.bot_user_id not in (None, ws.bot_user_id):
                logger.warning(
                    "%s was saved with bot user %s, the playground's bot is now %s",
                    self.path,
                    stored.bot_user_id,
                    ws.bot_user_id,
                )
            numbers = [stored.next_id]
            for user in stored.users:
                if user.id == ws.bot_user_id:
                    continue  # the bot's user comes from the Workspace's own arguments
                ws.users[user.id] = user
            for channel in stored.channels:
                ws.restore_channel(channel)
            for channel_id, message in stored.messages:
                if channel_id in ws.channels:
                    ws.restore(channel_id, message)
            ws.ephemerals.extend(stored.ephemerals)
            for token, user_id in stored.tokens:
                if token != ws.bot_token and user_id in ws.users:
                    ws.tokens[token] = user_id
            for ref in (*ws.users, *ws.channels):
                minted = _MINTED_ID.match(ref)
                if minted:
                    numbers.append(int(minted.group(1)) + 1)
            ws.reserve_ids(max(numbers))
            ws.clock.advance(stored.clock_last)
        ws.touch()
        return True

    def _read(self) -> _Stored | None:
        """Every stored row, parsed; None when no snapshot was saved yet."""
        conn = self._conn
        try:
            meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            if "saved_at" not in meta:
                return None
            users = [
                User(uid, name, real_name, is_bot=bool(is_bot), bot_id=bot_id, tz=tz)
                for uid, name, real_name, is_bot, bot_id, tz in conn.execute(
                    "SELECT id, name, real_name, is_bot, bot_id, tz FROM users ORDER BY seq"
                )
            ]
            channels = [
                Channel(cid, name, kind, int(created), user, set(json.loads(members)), bool(archived))
                for cid, name, kind, created, user, members, archived in conn.execute(
                    "SELECT id, name, kind, created, user, members, archived FROM channels ORDER BY seq"
                )
            ]
            messages = [
                (str(channel), json.loads(body))
                for channel, body in conn.execute("SELECT channel, body FROM messages ORDER BY channel, sort_key")
            ]
            ephemerals = [json.loads(body) for (body,) in conn.execute("SELECT body FROM ephemerals ORDER BY seq")]
            tokens = [(str(t), str(u)) for t, u in conn.execute("SELECT token, user FROM tokens")]
            stored = _Stored(
                next_id=int(meta.get("next_id", "1")),
                clock_last=int(meta.get("clock_last", "0")),
                bot_user_id=meta.get("bot_user_id"),
                users=users,
                channels=channels,
                messages=messages,
                ephemerals=ephemerals,
                tokens=tokens,
            )
        except (sqlite3.DatabaseError, ValueError, TypeError) as err:
            raise _unusable(self.path, f"its contents are damaged: {err}") from None
        if not all(isinstance(m, dict) and isinstance(m.get("ts"), str) for _, m in messages):
            raise _unusable(self.path, "its contents are damaged: a message without a ts")
        return stored

    # -- saving ----------------------------------------------------------

    def save(self, ws: Workspace) -> None:
        """Replace the file's contents with a snapshot of `ws`, in one transaction."""
        snapshot = self._snapshot(ws)
        with self._lock:
            if snapshot.seq <= self._written:
                return  # another thread already wrote a newer snapshot
            try:
                with self._conn:
                    for table in _TABLES:
                        self._conn.execute(f"DELETE FROM {table}")
                    self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", snapshot.meta)
                    self._conn.executemany(
                        "INSERT INTO users (seq, id, name, real_name, is_bot, bot_id, tz) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        snapshot.users,
                    )
                    self._conn.executemany(
                        "INSERT INTO channels (seq, id, name, kind, created, user, members, archived)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        snapshot.channels,
                    )
                    self._conn.executemany(
                        "INSERT INTO messages (channel, ts, sort_key, body) VALUES (?, ?, ?, ?)", snapshot.messages
                    )
                    self._conn.executemany("INSERT INTO ephemerals (seq, body) VALUES (?, ?)", snapshot.ephemerals)
                    self._conn.executemany("INSERT INTO tokens (token, user) VALUES (?, ?)", snapshot.tokens)
            except sqlite3.Error as err:
                raise StoreError(f"could not save the playground workspace to {self.path}: {err}") from err
            self._written = snapshot.seq

    def _snapshot(self, ws: Workspace) -> _Snapshot:
        """Serialize everything under the workspace lock; the slow disk write happens after."""
        with ws.lock:
            self._snapshots += 1
            users = [
                (i, u.id, u.name, u.real_name, int(u.is_bot), u.bot_id, u.tz)
                for i, u in enumerate(ws.users.values())
                if u.id != ws.bot_user_id
            ]
            channels = [
                (i, c.id, c.name, c.kind, c.created, c.user, _dumps(sorted(c.members)), int(c.archived))
                for i, c in enumerate(ws.channels.values())
            ]
            # A streaming message is stored with its text so far; nothing streams after a restart.
            messages = [
                (channel_id, str(m["ts"]), ts_key(m["ts"]), _dumps(m))
                for channel_id in ws.channels
                for m in ws.all_messages(channel_id)
            ]
            ephemerals = [(i, _dumps(e)) for i, e in enumerate(ws.ephemerals)]
            tokens = [(t, u) for t, u in ws.tokens.items() if t != ws.bot_token]
            meta = [
                ("schema_version", str(SCHEMA_VERSION)),
                ("next_id", str(ws.next_id_number)),
                ("clock_last", str(ws.clock.last)),
                ("team_id", ws.team_id),
                ("bot_user_id", ws.bot_user_id),
                ("saved_at", f"{time.time():.6f}"),
            ]
            return _Snapshot(self._snapshots, meta, users, channels, messages, ephemerals, tokens)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> WorkspaceStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Autosave:
    """Saves `ws` to `store` from a daemon thread: soon after a change, at most about once per `interval`
    seconds; `stop()` saves once more and ends the thread. Started on construction."""

    def __init__(self, ws: Workspace, store: WorkspaceStore, interval: float = 1.0) -> None:
        self.ws = ws
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._seen = ws.revision
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="playground-autosave", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_save = float("-inf")
        while not self._stop.is_set():
            # A short wait, so stop() is noticed promptly even while nothing changes.
            if self.ws.wait_for_change(self._seen, timeout=0.25) == self._seen:
                continue
            delay = last_save + self.interval - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break  # stop() makes the final save
            self._seen = self.ws.revision  # changes made while saving trigger the next save
            last_save = time.monotonic()
            self._save()

    def _save(self) -> None:
        try:
            self.store.save(self.ws)
        except Exception:
            if not self._failing:
                logger.exception("autosave of the playground workspace to %s failed", self.store.path)
            else:
                logger.warning("autosave to %s is still failing", self.store.path)
            self._failing = True
        else:
            if self._failing:
                logger.info("autosave to %s works again", self.store.path)
            self._failing = False

    def stop(self) -> None:
        """End the thread, then save once more (errors from that save are raised)."""
        self._stop.set()
        self._thread.join()
        self.store.save(self.ws)
