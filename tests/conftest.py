from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerBase

from bot.runtime import Ember
from bot.settings import Settings, load_settings
from db import Database
from models.embeddings import Embedder
from playground import LocalSlack, SlackClient
from tests.support.models import build_tiny_model, packaged_tokenizer
from tests.support.postgres import PostgresMissing, PostgresServer

# Tests never reach a model hub; everything they load is built here or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerBase:
    return packaged_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", tokenizer)


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No EMBER_*/SLACK_* from the developer's shell, and no .env file, leak into a test."""
    for name in list(os.environ):
        if name.startswith(("EMBER_", "SLACK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


# --- a running bot against the local Slack stand-in -------------------------------------------

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture()
def slack() -> Iterator[LocalSlack]:
    with LocalSlack(bot_token="xoxb-test", team_id="T0001", bot_user_id="UBOT", bot_id="BBOT") as fake:
        yield fake
        assert not fake.server_errors, fake.server_errors


@pytest.fixture()
def bot_settings(clean_env: None, tmp_path: Path, slack: LocalSlack, tiny_model_dir: Path) -> Settings:
    return load_settings(
        slack_bot_token="xoxb-test",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        model=str(tiny_model_dir),
        device="cpu",
        max_new_tokens=16,
        workers=1,
        # Only the scheduler's own tests run it; it would start a training process at 03:00.
        scheduler=False,
    )


class Bots:
    """Starts Ember the way `ember run` does (minus signals) and restarts it on the same data."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: Ember | None = None

    def start(self, **changes: object) -> Ember:
        settings = self.settings.model_copy(update=changes) if changes else self.settings
        self.current = Ember.build(settings)
        self.current.start()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None

    def restart(self) -> Ember:
        self.stop()
        return self.start()

    @property
    def client(self) -> SlackClient:
        assert self.current is not None
        return SlackClient(f"{self.current.url}/slack/events", SIGNING_SECRET)


@pytest.fixture()
def bots(bot_settings: Settings) -> Iterator[Bots]:
    runner = Bots(bot_settings)
    yield runner
    runner.stop()


# --- a real database (SQLite file or PostgreSQL server) and the packaged embedding model ------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server, started once for the whole run (only when a test asks for one)."""
    try:
        server = PostgresServer()
    except PostgresMissing as exc:
        # A failure, never a skip: a run that silently left PostgreSQL out would pass without testing it.
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture()
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database of the test's own, dropped afterwards."""
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of the test's own: a SQLite file, then a PostgreSQL database."""
    sqlite = f"sqlite:///{tmp_path / 'ember.db'}"
    # Only a PostgreSQL test starts the server: a run of SQLite tests alone never needs one.
    database = Database(sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url"))
    database.upgrade()
    yield database
    database.close()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run."""
    return Embedder.load()
