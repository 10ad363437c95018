"""Digest schedules: one APScheduler cron job per subscription (`digest:<id>`), rebuilt from the table.

The table is the source of truth, so the jobs live in the scheduler's memory store: at start-up they are
made from the rows, after a change in this process they are brought in step at once, and a periodic
sync picks up changes made by replicas (which run with the scheduler off).

After downtime only the latest missed window is posted: at start-up each subscription's last closed
window is run once (the run's unique key makes that a no-op where it was posted already); older
missed windows are let go, so a long outage does not end in a storm of stale digests.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler

from db import Database
from db.digests import Subscription, subscription, subscriptions
from handlers.qa.schedule import cron_trigger, last_closed_window
from handlers.slack.digests import DigestRunner, Outcome

log = logging.getLogger(__name__)

PREFIX = "digest:"
SYNC = "digest-sync"
STORE = "memory"


class DigestJobs:
    def __init__(self, scheduler: BaseScheduler, db: Database, runner: DigestRunner, *, sync_seconds: int = 60) -> None:
        self.scheduler = scheduler
        self.db = db
        self.runner = runner
        self.sync_seconds = sync_seconds
        self._lock = threading.Lock()
        self._schedules: dict[int, tuple[str, str]] = {}
        self._catching_up: threading.Thread | None = None

    def start(self) -> None:
        """Jobs for every subscription, the latest missed window of each, and the periodic sync."""
        subs = self.sync()
        self.scheduler.add_job(
            self.sync, "interval", seconds=self.sync_seconds, id=SYNC, jobstore=STORE, replace_existing=True
        )
        # Catching up can take minutes on a CPU; start-up does not wait for it, stop() does.
        self._catching_up = threading.Thread(target=self._catch_up, args=(subs,), name="ember-digest-catch-up")
        self._catching_up.start()

    def stop(self) -> None:
        if self._catching_up is not None:
            self._catching_up.join()

    def _catch_up(self, subs: list[Subscription]) -> None:
        now = datetime.now(UTC)
        for sub in subs:
            window = last_closed_window(cron_trigger(sub.cron, sub.timezone), now)
            if window is not None and window[1] > sub.created_at:
                try:
                    self.runner.run_window(sub, window)
                except Exception:
                    log.exception("catching up digest %d failed", sub.id)

    def sync(self) -> list[Subscription]:
        """Add, change and remove `digest:<id>` jobs until they match the table."""
        with self.db.session() as session:
            subs = subscriptions(session)
        with self._lock:
            wanted = {sub.id: sub for sub in subs}
            for sub_id in set(self._schedules) - set(wanted):
                self._remove(sub_id)
            for sub in subs:
                if self._schedules.get(sub.id) != (sub.cron, sub.timezone):
                    self.scheduler.add_job(
                        self.fire,
                        cron_trigger(sub.cron, sub.timezone),
                        args=[sub.id],
                        id=f"{PREFIX}{sub.id}",
                        jobstore=STORE,
                        replace_existing=True,
                    )
                    self._schedules[sub.id] = (sub.cron, sub.timezone)
        return subs

    def fire(self, subscription_id: int) -> Outcome | None:
        """The cron job: the window that has just closed."""
        with self.db.session() as session:
            sub = subscription(session, subscription_id=subscription_id)
        if sub is None:  # stopped since the job was scheduled
            return None
        window = last_closed_window(cron_trigger(sub.cron, sub.timezone), datetime.now(UTC))
        if window is None or window[1] <= sub.created_at:
            return None
        return self.runner.run_window(sub, window)

    def run(self, subscription_id: int, window: tuple[datetime, datetime]) -> Outcome | None:
        with self.db.session() as session:
            sub = subscription(session, subscription_id=subscription_id)
        return self.runner.run_window(sub, window) if sub is not None else None

    def next_run(self, subscription_id: int) -> datetime | None:
        job = self.scheduler.get_job(f"{PREFIX}{subscription_id}", jobstore=STORE)
        return job.next_run_time if job is not None else None

    def _remove(self, sub_id: int) -> None:
        job_id = f"{PREFIX}{sub_id}"
        if self.scheduler.get_job(job_id, jobstore=STORE) is not None:
            self.scheduler.remove_job(job_id, jobstore=STORE)
        self._schedules.pop(sub_id, None)
