"""The nightly job: APScheduler runs a training run as its own process on a cron schedule, and the
running bot then swaps to whatever the registry says is active, without dropping a request.

The job is kept in the database (a persistent SQLAlchemy job store), so a missed night is caught up
after a restart within the misfire grace time; it never runs twice at once (max_instances=1, and
the training process holds a lock on the data directory). Exactly one process per deployment may
run the scheduler: replicas set EMBER_SCHEDULER=false.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from bot.settings import Settings
from handlers.qa.schedule import cron_trigger

log = logging.getLogger(__name__)

NIGHTLY = "nightly-training"
SYNC = "model-sync"


def train_argv(settings: Settings) -> list[str]:
    """`python -m models.train_job` arguments that train exactly what this bot serves."""
    return [
        "--data-dir", str(settings.data_dir.resolve()),
        "--database-url", settings.resolved_database_url,
        "--model", settings.model,
        "--device", settings.device,
        "--system-prompt", settings.system_prompt,
        "--include-private" if settings.train_on_private else "--no-include-private",
        "--augment" if settings.train_augment else "--no-augment",
        "--min-examples", str(settings.train_min_examples),
        "--no-progress",
    ]  # fmt: skip


def run_training(argv: list[str]) -> int:
    """The scheduled job itself (module level, so the persistent job store can name it)."""
    log.info("nightly training starts")
    result = subprocess.run([sys.executable, "-m", "models.train_job", *argv], check=False)
    log.info("nightly training finished with exit status %d", result.returncode)
    return result.returncode


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        *,
        sync_model: Callable[[], None],
        after_training: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sync_model = sync_model
        # Called once the swap check after a nightly run is done (the learning report).
        self.after_training = after_training
        self._scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(url=settings.resolved_database_url, tablename="apscheduler_jobs"),
                "memory": MemoryJobStore(),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.train_misfire_grace},
            timezone=ZoneInfo(settings.timezone),
        )
        self._scheduler.add_listener(self._after_job, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def start(self) -> None:
        trigger = cron_trigger(self.settings.train_cron, self.settings.timezone)
        self._scheduler.add_job(
            run_training, trigger, args=[train_argv(self.settings)], id=NIGHTLY, replace_existing=True
        )
        # `ember models promote|rollback` run in another process: notice their changes too.
        self._scheduler.add_job(
            self.sync_model, "interval", seconds=self.settings.model_sync_seconds, id=SYNC, jobstore="memory"
        )
        self._scheduler.start()
        job = self._scheduler.get_job(NIGHTLY)
        log.info(
            "nightly training scheduled (%s %s); next run %s",
            self.settings.train_cron,
            self.settings.timezone,
            job.next_run_time if job else "?",
        )

    def next_run(self) -> str | None:
        job = self._scheduler.get_job(NIGHTLY)
        return str(job.next_run_time) if job and job.next_run_time else None

    @property
    def jobs(self) -> BackgroundScheduler:
        """The APScheduler instance, for other schedules (digests) to add their jobs to."""
        return self._scheduler

    def _after_job(self, event: JobExecutionEvent) -> None:
        if event.job_id != NIGHTLY:
            return
        self.sync_model()
        if self.after_training is not None:
            try:
                self.after_training()
            except Exception:
                log.exception("could not report the nightly training run")

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
