"""Keeps this process's claims on Slack events its own, and answers those of processes that died.

Every `interval` seconds it beats this process's heartbeat and takes over the claims of owners that
have missed `STALE_BEATS` beats (db.claims.take_orphans), at start-up included: a process killed
mid-answer has its questions answered by the next one to start, or by a replica that is running.
A taken-over claim is replayed through the Bolt app, so it takes the very path of a new event.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from slack_bolt import App

from db import Database
from db.claims import Claim, heartbeat, prune_events, retire, take_orphans
from handlers.slack.claims import replay, tell_gave_up

log = logging.getLogger(__name__)

STALE_BEATS = 3  # an owner that misses this many heartbeats is presumed dead
PRUNE_EVERY = timedelta(minutes=10)
KEEP_SETTLED = timedelta(days=1)  # far past Slack's last retry


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ClaimKeeper:
    def __init__(self, db: Database, bolt: App, *, owner: str, interval: float, lease: timedelta) -> None:
        self.db = db
        self.bolt = bolt
        self.owner = owner
        self.interval = interval
        self.lease = lease
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.interval * STALE_BEATS)

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="ember-claims", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One heartbeat, then the claims of dead owners; never raises (it runs on its own thread)."""
        try:
            with self.db.session() as session:
                heartbeat(session, owner=self.owner)
            if self._draining.is_set():
                return
            with self.db.session() as session:
                orphans = take_orphans(session, owner=self.owner, lease=self.lease, stale_after=self.stale_after)
            for orphan in orphans:
                if orphan.outcome is Claim.GIVE_UP:
                    log.warning("event %s failed every attempt; telling the asker", orphan.event_id)
                    tell_gave_up(self.bolt.client, orphan.work)
                    continue
                log.info("taking over event %s from a process that stopped", orphan.event_id)
                self.bolt.dispatch(replay(orphan.work, orphan.event_id))
            self._prune()
        except Exception:
            log.exception("could not keep the claims on Slack events")

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY.total_seconds():
            return
        self._pruned_at = now
        with self.db.session() as session:
            prune_events(session, older_than=KEEP_SETTLED)

    def drain(self) -> None:
        """Shutting down: keep beating for the answers in flight, take nothing new on."""
        self._draining.set()

    def stop(self) -> None:
        """After this process's answers have drained: no more beats, and nothing left for others to wait on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        try:
            with self.db.session() as session:
                retire(session, owner=self.owner)
        except Exception:
            log.exception("could not retire %s", self.owner)
