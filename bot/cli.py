"""`ember`: run the bot, ask one question, chat in the terminal, or upgrade the database."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot import logs
from bot.settings import Settings, SettingsError, load_settings
from db.repo import Conversation
from handlers.qa.handler import QAHandler
from handlers.qa.types import Question
from models.embeddings import EmbedderMissing
from models.loading import ModelError

TERMINAL_WORKSPACE = "local"
TERMINAL_CHANNEL = "terminal"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_level)
        return int(args.func(settings, args))
    except SettingsError as exc:
        print(f"ember: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except (_UserError, ModelError, EmbedderMissing) as exc:
        print(f"ember: {exc}", file=sys.stderr)
        return 2


class _UserError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Ember, a self-hosted Slack assistant.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve Slack (HTTP on EMBER_HOST:EMBER_PORT, or Socket Mode); without SLACK_BOT_TOKEN, the playground",
    )
    run.set_defaults(func=_run)
    playground = sub.add_parser("playground", help="serve a local workspace in the browser, ignoring Slack settings")
    playground.set_defaults(func=_playground)
    ask = sub.add_parser("ask", help="answer one question through the same QA path, without Slack")
    ask.add_argument("question")
    ask.set_defaults(func=_ask)
    chat = sub.add_parser("chat", help="a terminal conversation with memory")
    chat.add_argument("--resume", metavar="ID", help="continue an earlier conversation")
    chat.set_defaults(func=_chat)
    train = sub.add_parser("train", help="one training run on the feedback so far, in its own process")
    for flag, kind, what in TRAIN_OVERRIDES:
        train.add_argument(flag, type=kind, help=what)
    train.set_defaults(func=_train)
    models = sub.add_parser("models", help="the model versions: list, promote VERSION, rollback")
    models_sub = models.add_subparsers(required=True, metavar="ACTION")
    models_sub.add_parser("list", help="every version, the active one marked").set_defaults(func=_models_list)
    promote = models_sub.add_parser("promote", help="serve VERSION (the running bot follows within a minute)")
    promote.add_argument("version")
    promote.set_defaults(func=_models_promote)
    models_sub.add_parser("rollback", help="serve the previously active version again").set_defaults(
        func=_models_rollback
    )
    database = sub.add_parser("db", help="database maintenance")
    database_sub = database.add_subparsers(required=True, metavar="ACTION")
    upgrade = database_sub.add_parser("upgrade", help="apply database migrations")
    upgrade.set_defaults(func=_db_upgrade)
    backup = database_sub.add_parser(
        "backup", help="copy the database and model versions into a new folder PATH, while the bot runs"
    )
    backup.add_argument("path", type=Path)
    backup.set_defaults(func=_db_backup)
    restore = database_sub.add_parser("restore", help="restore a backup from PATH into an empty EMBER_DATA_DIR")
    restore.add_argument("path", type=Path)
    restore.set_defaults(func=_db_restore)
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runtime import Ember

    if settings.slack_bot_token is None and settings.playground:
        return _playground(settings, args)
    settings.require_slack()
    Ember.build(settings).serve()
    return 0


def _playground(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.playground_run import PlaygroundEmber

    PlaygroundEmber(settings).serve()
    return 0


@contextmanager
def _terminal_qa(settings: Settings) -> Iterator[QAHandler]:
    """The QA handler `ember run` uses, closed afterwards (the engine's batching thread keeps a process alive)."""
    from bot.runtime import build_llm, build_qa, open_database

    database = open_database(settings)
    try:
        engine = build_llm(settings, database)
        try:
            yield build_qa(settings, database, engine)
        finally:
            engine.close()
    finally:
        database.close()


def _ask_once(qa: QAHandler, conversation: Conversation, text: str) -> str:
    question = Question(conversation=conversation, user_id="terminal", text=text, source="cli")
    answer = qa.answer(question)
    qa.remember(question, answer, answer_ts=None)
    return answer.text


def _ask(settings: Settings, args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise _UserError('nothing to ask: ember ask "your question"')
    conversation = Conversation(TERMINAL_WORKSPACE, TERMINAL_CHANNEL, "terminal", uuid.uuid4().hex)
    with _terminal_qa(settings) as qa:
        print(_ask_once(qa, conversation, args.question))
    return 0


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    with _terminal_qa(settings) as qa:
        return _chat_loop(qa, args.resume)


def _chat_loop(qa: QAHandler, resume: str | None) -> int:
    conversation_id = resume or uuid.uuid4().hex[:12]
    conversation = Conversation(TERMINAL_WORKSPACE, TERMINAL_CHANNEL, "terminal", conversation_id)
    print(
        f"Ember ({qa.engine.version}). Conversation {conversation_id}; resume it with "
        f"`ember chat --resume {conversation_id}`. Ctrl-D or 'exit' to leave."
    )
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if line in ("exit", "quit"):
            return 0
        if line:
            print(f"ember> {_ask_once(qa, conversation, line)}")


def _db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.runtime import open_database

    open_database(settings).close()
    print(f"database is up to date: {settings.resolved_database_url}")
    return 0


def _db_backup(settings: Settings, args: argparse.Namespace) -> int:
    from bot.backup import backup

    summary = backup(settings, args.path)
    print(f"backed up to {args.path}: {summary.describe()}")
    return 0


def _db_restore(settings: Settings, args: argparse.Namespace) -> int:
    from bot.backup import restore

    summary = restore(settings, args.path)
    print(f"restored into {settings.data_dir}: {summary.describe()}")
    return 0


# Training settings a person may set for one run (the defaults suit the device; see models/training.py).
TRAIN_OVERRIDES: tuple[tuple[str, type, str], ...] = (
    ("--epochs", int, "passes over the feedback"),
    ("--learning-rate", float, "LoRA learning rate"),
    ("--batch-size", int, "examples per step"),
    ("--anchors", int, "general answers replayed beside the feedback (0: none)"),
)


def _train(settings: Settings, args: argparse.Namespace) -> int:
    """Train in a child process, so a bot on this machine keeps answering; it follows a promotion."""
    import subprocess

    from bot.runtime import open_database
    from bot.scheduler import train_argv

    open_database(settings).close()
    argv = [arg for arg in train_argv(settings) if arg != "--no-progress"]
    for flag, _, _ in TRAIN_OVERRIDES:
        value = getattr(args, flag.strip("-").replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    return subprocess.run([sys.executable, "-m", "models.train_job", *argv], check=False).returncode


@contextmanager
def _registry_session(settings: Settings) -> Iterator[Any]:
    """A session on the registry, with the base model registered (a fresh install has no versions yet)."""
    from bot.runtime import open_database
    from models import loading, registry

    database = open_database(settings)
    try:
        with database.session() as session:
            registry.ensure_base(session, base=loading.resolve(settings.model, settings.data_dir))
            yield session
    finally:
        database.close()


def _models_list(settings: Settings, _args: argparse.Namespace) -> int:
    from models import registry

    with _registry_session(settings) as session:
        print(registry.format_versions(registry.list_versions(session)))
    return 0


def _models_promote(settings: Settings, args: argparse.Namespace) -> int:
    from models import registry

    with _registry_session(settings) as session:
        try:
            info = registry.promote(session, version=args.version)
        except registry.RegistryError as exc:
            raise _UserError(str(exc)) from exc
        print(f"{info.version} is now active; a running bot swaps to it within EMBER_MODEL_SYNC_SECONDS.")
    return 0


def _models_rollback(settings: Settings, _args: argparse.Namespace) -> int:
    from models import registry

    with _registry_session(settings) as session:
        try:
            info = registry.rollback(session)
        except registry.RegistryError as exc:
            raise _UserError(str(exc)) from exc
        print(f"rolled back: {info.version} is active again; a running bot swaps to it shortly.")
    return 0
