"""`ember` as an operator runs it: a real subprocess, settings from the environment only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
