"""A real PostgreSQL server for the tests: initdb into a temp dir, listening only on a unix socket there.

One server per test session (`PostgresServer.start`); each test gets a database of its own
(`create_database`, dropped with `drop_database`). PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` system user (created if missing), which owns the temp dir.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

INSTALL_HINT = "apt-get install postgresql (or run scripts/setup.sh --dev as root)"
SERVER_USER = "postgres"  # the system user the server runs as when the tests run as root
SUPERUSER = "ember"  # the database role the tests connect as (trusted on the socket)


class PostgresMissing(RuntimeError):
    """initdb or pg_ctl is not installed."""


def server_binaries() -> Path:
    """The directory holding initdb and pg_ctl: on PATH, or Debian's versioned directory (newest first)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    for pg_ctl in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version, reverse=True):
        directory = Path(pg_ctl).parent
        if (directory / "initdb").is_file():
            return directory
    raise PostgresMissing(f"the PostgreSQL tests need a PostgreSQL server (initdb and pg_ctl): {INSTALL_HINT}")


def _version(pg_ctl: str) -> tuple[int, ...]:
    version = Path(pg_ctl).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


class PostgresServer:
    def __init__(self) -> None:
        self.bin = server_binaries()
        self.as_root = os.geteuid() == 0
        # Under /tmp rather than pytest's own temp dir: that one is private to the user running the tests,
        # and a unix socket path must stay short (about 100 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="ember-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self._names = itertools.count(1)
        self._running = False

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.as_root:
            _ensure_system_user(SERVER_USER)
            owner = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb",
            f"--pgdata={self.data}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        # No TCP at all: the socket lives in the temp dir, so parallel runs never collide on a port.
        # Durability is traded for speed; a test's data lives only as long as the test.
        options = (
            f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        log = f"--log={self.root / 'server.log'}"
        self._run("pg_ctl", "start", "--wait", "--timeout=60", f"--pgdata={self.data}", log, f"--options={options}")
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._run("pg_ctl", "stop", "--wait", "--mode=fast", f"--pgdata={self.data}")
            self._running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL Ember is configured with (EMBER_DATABASE_URL) for one database."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A fresh, empty database; its name."""
        name = f"ember_test_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a connection a test left open (a pool not yet disposed) must not keep the database alive.
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def _admin(self, statement: str) -> None:
        with psycopg.connect(host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", autocommit=True) as conn:
            conn.execute(statement.encode())

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}{self.log()}")


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
