"""The two bots bench.load measures, each a server in its own process: `ember run`, and a bare Bolt
app that only acks (the baseline)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from playground import LocalSlack
from tests.support.cli import ember_env, free_port

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
BOT_USER, BOT_ID = "UBOT", "BBOT"
ROOT = Path(__file__).resolve().parents[1]


class BotProcess:
    """A bot server in its own process: waits for its /healthz, keeps its output, reads its memory."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.output: list[str] = []
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # Read all along: a full pipe would stall the bot mid-run.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def health(self) -> dict[str, Any] | None:
        try:
            answer = requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except requests.RequestException:
            return None
        if answer.status_code != 200:
            return None
        try:
            return dict(answer.json())
        except ValueError:
            return {}

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.health() is None:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise RuntimeError(f"{self.process.args!r} exited:\n{''.join(self.output)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.process.args!r} did not come up in {timeout:.0f} s")
            time.sleep(0.2)

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (answers in flight finish), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
            except BaseException:  # interrupted while waiting: no bot is left behind
                self.process.kill()
                raise
        self._reader.join(timeout=5)
        return self.process.returncode


def rss_mib(pid: int) -> float:
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) / 1024
    return float(psutil.Process(pid).memory_info().rss) / (1 << 20)


def serve_baseline(port: int, api_url: str) -> None:
    """The baseline bot: a bare Bolt app whose only work is the ack Bolt sends before any listener runs."""
    from slack_bolt import App
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk import WebClient
    from waitress import serve

    # Logged as Ember logs, so the table counts both bots' complaints alike.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = App(client=WebClient(token=TOKEN, base_url=api_url), signing_secret=SECRET)

    @app.event("app_mention")
    def nothing() -> None:
        return None

    slack = SlackRequestHandler(app)

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("content-type", "application/json")])
            return [b"{}"]
        return slack(environ, start_response)

    serve(wsgi, host="127.0.0.1", port=port, threads=8, ident="baseline", _quiet=True)


def start_ember(scratch: Path, slack: LocalSlack, model_dir: Path, args: argparse.Namespace) -> BotProcess:
    port = free_port()
    env = ember_env(
        scratch,
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.api_url,
        EMBER_MODEL=str(model_dir),
        EMBER_DEVICE="cpu",
        EMBER_MAX_NEW_TOKENS=str(args.tokens),
        EMBER_MEMORY="true" if args.memory else "false",
        EMBER_SCHEDULER="false",
        EMBER_PORT=str(port),
    )
    return _started(BotProcess([sys.executable, "-m", "bot", "run"], env=env, cwd=scratch, port=port), 300)


def start_baseline(scratch: Path, slack: LocalSlack) -> BotProcess:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "bench.load", "--serve-baseline", str(port), "--api-url", slack.api_url]
    return _started(BotProcess(argv, env=env, cwd=scratch, port=port), 120)


def _started(bot: BotProcess, timeout: float) -> BotProcess:
    try:
        bot.wait_up(timeout)
    except BaseException:
        bot.stop(timeout=5)
        raise
    return bot


@contextlib.contextmanager
def running(bot: Callable[[], BotProcess]) -> Iterator[BotProcess]:
    process = bot()
    try:
        yield process
    except BaseException:
        # Interrupted (Ctrl-C) or failed: no waiting for a queue of answers to drain.
        process.stop(timeout=5)
        raise
    process.stop()
