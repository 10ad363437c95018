"""`ember run` without Slack settings (or `ember playground`): Ember and a local workspace in one process.

The workspace (the `playground` package) is Slack's side of the protocol: it serves the Web API that
Ember's WebClient calls and posts signed events, commands and interactions to Ember's `/slack/events`.
Ember is built exactly as for Slack, with settings that point it at the local workspace; only the
HTTP server also mounts the workspace's page. Nothing under handlers/ knows which Slack it talks to.

The playground keeps its own data directory (`EMBER_DATA_DIR/playground`: the workspace, Ember's
database, trained versions), so what is tried there never reaches a real team's memory or weights.
"""

from __future__ import annotations

import logging
import re
import secrets
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bot.runtime import Ember
from bot.scheduler import train_argv
from bot.settings import Settings
from db.repo import latest_training_run
from handlers.slack.wiring import SHORTCUT_NAMES
from playground.app import Playground
from playground.web import PlaygroundWeb

log = logging.getLogger(__name__)

# Feedback examples enough for a training run here, unless EMBER_TRAIN_MIN_EXAMPLES says otherwise:
# a person trying Ember gives a handful of votes, not a team's night of them.
PLAYGROUND_MIN_EXAMPLES = 4
_PROGRESS_LINES = 40


def playground_settings(settings: Settings, *, api_url: str, bot_token: str, signing_secret: str) -> Settings:
    """`settings` pointed at the local workspace, with the playground's own data directory and database."""
    data_dir = settings.data_dir / "playground"
    data_dir.mkdir(parents=True, exist_ok=True)
    update: dict[str, Any] = {
        "slack_bot_token": SecretStr(bot_token),
        "slack_signing_secret": SecretStr(signing_secret),
        "slack_app_token": None,
        "slack_api_url": api_url,
        "data_dir": data_dir,
        "database_url": None,
    }
    if "train_min_examples" not in settings.model_fields_set:
        update["train_min_examples"] = PLAYGROUND_MIN_EXAMPLES
    return settings.model_copy(update=update)


@dataclass
class TrainingJob:
    """The "Run nightly training now" button: one `ember train` run at a time, in its own process,
    with the last lines of its progress kept for the page."""

    settings: Settings
    on_done: Any = None  # called with the exit status when a run ends
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=_PROGRESS_LINES))
    result: str | None = None
    started_at: str | None = None
    _thread: threading.Thread | None = None
    _process: subprocess.Popen[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> dict[str, Any]:
        with self._lock:
            if self.running:
                return {"ok": False, "error": "already_running", "message": "A training run is already running."}
            self.lines.clear()
            self.result = None
            self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
            argv = [arg for arg in train_argv(self.settings) if arg != "--no-progress"]
            self._thread = threading.Thread(target=self._run, args=(argv,), name="ember-playground-train", daemon=True)
            self._thread.start()
        log.info("training started from the playground")
        return {"ok": True}

    def _run(self, argv: list[str]) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "models.train_job", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._process = process
        assert process.stdout is not None
        last = ""
        for chunk in process.stdout:
            # Progress bars redraw with carriage returns: keep each state as a line of its own.
            for line in re.split(r"[\r\n]+", chunk):
                if line.strip():
                    last = line.strip()
                    self._add(last)
        status = process.wait()
        self.result = last if status == 0 else f"training failed (exit status {status}): {last}"
        log.info("playground training finished: %s", self.result)
        if self.on_done is not None:
            try:
                self.on_done(status)
            except Exception:
                log.exception("after the playground's training run")

    def _add(self, line: str) -> None:
        # A redrawn progress bar replaces its previous state instead of filling the list.
        if self.lines and _bar(self.lines[-1]) and _bar(line) and _bar(line) == _bar(self.lines[-1]):
            self.lines[-1] = line
        else:
            self.lines.append(line)

    def state(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "lines": list(self.lines),
            "result": self.result,
            "started_at": self.started_at,
        }

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """End a run still going (the playground is closing); the training job's own record says so,
        and the version being served is untouched."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.wait(timeout=30)


def _run_summary(status: str, candidate: str | None, examples: int) -> str:
    """A training run in a few words, for the status bar."""
    if status in ("promoted", "rejected") and candidate:
        return f"{candidate} {status} ({examples} examples)"
    return f"{status} ({examples} examples)" if examples else status


def _bar(line: str) -> str | None:
    """The label of a tqdm-style progress line ("training:  40%|####  | 4/10"), else None."""
    match = re.match(r"^(.*?):?\s*\d+%\|", line)
    return match.group(1) if match else None


class PlaygroundEmber:
    """The local workspace, Ember pointed at it, and the page mounted on Ember's HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.base_settings = settings
        # A new secret each start: only this process signs, and only this process checks.
        self.signing_secret = secrets.token_hex(16)
        self.playground = Playground(
            settings.data_dir / "playground",
            signing_secret=self.signing_secret,
            status=self.status,
            train=self.train,
            shortcuts=SHORTCUT_NAMES.items(),
        )
        self.ember: Ember | None = None
        self.training: TrainingJob | None = None
        self.web: PlaygroundWeb | None = None

    def start(self) -> Ember:
        playground = self.playground.start()
        try:
            settings = playground_settings(
                self.base_settings,
                api_url=playground.slack.api_url,
                bot_token=playground.slack.bot_token,
                signing_secret=self.signing_secret,
            )
            if settings.report_channel is None:  # the learning report goes where everyone sees it
                general = playground.slack.workspace.channel("general")
                if general is not None:
                    settings = settings.model_copy(update={"report_channel": general.id})
            self.web = PlaygroundWeb(playground)
            ember = Ember.build(settings, web=self.web)
            self.ember = ember
            self.training = TrainingJob(settings, on_done=self._trained)
            playground.events_url = f"{ember.url}/slack/events"
            # Permalinks (an answer's citations, a digest's links) open in the page.
            playground.slack.workspace.web_url = ember.url
            ember.start()
        except BaseException:
            self.stop()
            raise
        return ember

    def _trained(self, _status: int) -> None:
        """A promoted version is served at once (the scheduler would take up to a minute), and reported."""
        if self.ember is not None:
            self.ember.sync_model()
            self.ember.report_training()

    @property
    def url(self) -> str:
        assert self.ember is not None
        return f"{self.ember.url}/"

    def status(self) -> dict[str, Any]:
        ember = self.ember
        if ember is None:
            return {"model_version": None, "queue_depth": 0, "last_training": None, "training": None}
        with ember.db.session() as session:
            run = latest_training_run(session)
            last = None
            if run is not None:
                last = {
                    "summary": _run_summary(run.status, run.candidate_version, run.examples),
                    "status": run.status,
                    "examples": run.examples,
                    "candidate_version": run.candidate_version,
                    "started_at": run.started_at.isoformat(timespec="seconds"),
                    "finished_at": run.finished_at.isoformat(timespec="seconds") if run.finished_at else None,
                }
        return {
            "model_version": ember.engine.version,
            "queue_depth": ember.engine.queue_depth,
            "last_training": last,
            "training": self.training.state() if self.training is not None else None,
        }

    def train(self) -> dict[str, Any]:
        if self.training is None:
            return {"ok": False, "error": "not_ready", "message": "Ember is still starting."}
        return self.training.start()

    def serve(self) -> None:
        """Serve until SIGINT or SIGTERM, then shut down cleanly."""
        import signal

        stopped = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        self.start()
        line = f"Ember is running in a local playground: open {self.url}"
        log.info(line)
        print(line, flush=True)
        stopped.wait()
        self.stop()

    def stop(self) -> None:
        if self.training is not None:
            self.training.stop()
        if self.web is not None:
            self.web.close()
        if self.ember is not None:
            self.ember.stop()
            self.ember = None
        self.playground.stop()
