"""Engine and session factory; SQLite gets WAL and a busy timeout so readers never block the writer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Any fixed number: PostgreSQL names advisory locks by integers, one set per database.
MIGRATION_LOCK = 0x656D626572  # "ember"


# The driver to install for each SQLAlchemy dialect+driver name Ember is known to run on.
DRIVERS = {"postgresql+psycopg": "pip install 'ember[postgres]' (psycopg 3)"}


class DatabaseURLError(ValueError):
    """The database URL cannot be used: malformed, an unknown database, or its driver is not installed."""


def check_url(url: str) -> URL:
    """The parsed URL, once its dialect and driver load; DatabaseURLError says what is wrong otherwise.
    Nothing is connected to: a server that is down is found at the first session."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseURLError("not a SQLAlchemy URL (dialect+driver://user:password@host/database)") from None
    name = parsed.drivername
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise DatabaseURLError(
            f"{name!r} is not a database SQLAlchemy knows (e.g. sqlite, postgresql+psycopg)"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        # By the driver the dialect picked: a bare postgresql:// means psycopg 3 or psycopg2, by SQLAlchemy version.
        driver = f"{parsed.get_backend_name()}+{dialect.driver}"
        install = DRIVERS.get(driver, f"install the {exc.name or dialect.driver} package")
        if parsed.get_backend_name() == "postgresql" and driver not in DRIVERS:
            install += ", or use postgresql+psycopg://"
        raise DatabaseURLError(f"the driver for {name} is not installed: {install}") from None
    return parsed


class Database:
    """Owns the SQLAlchemy engine and hands out one session per unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = check_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False} if self.is_sqlite else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def upgrade(self) -> None:
        upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` on this engine's database."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting at once on one database: the first migrates, the others wait for it here and
            # then find nothing left to do (PostgreSQL's DDL is transactional, so they never see half of it).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info("database schema is at %s", revision)
