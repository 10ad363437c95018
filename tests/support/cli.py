"""`ember` as an operator runs it: a real subprocess, settings from the environment only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def ember_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBER_", "SLACK_"))}
    env.update({"EMBER_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "EMBER_LOG_LEVEL": "WARNING"})
    env.update(extra)
    return env


def ember(
    tmp_path: Path, *args: str, stdin: str = "", timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=ember_env(tmp_path, **env),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_ember_run(tmp_path: Path, env: dict[str, str], port: int, timeout: float = 120) -> subprocess.Popen[str]:
    """`ember run` in its own process, once its /healthz answers (its output: stdout, stderr merged)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env={**env, "EMBER_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read() if process.stdout else "ember run exited")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("ember run did not come up")
        time.sleep(0.2)
