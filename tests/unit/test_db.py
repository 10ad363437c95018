from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import inspect, text

from db import Database
from db.repo import Conversation, claim_event, conversation_turns, event_status, finish_event, record_turn
from db.schema import utcnow


def open_db(path: Path) -> Database:
    database = Database(f"sqlite:///{path / 'ember.db'}")
    database.upgrade()
    return database


def test_migrations_build_the_schema_in_a_wal_sqlite_file(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    tables = set(inspect(database.engine).get_table_names())
    assert {"turns", "handled_events", "alembic_version"} <= tables
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    database.upgrade()  # a second upgrade at the next start is a no-op
    assert (tmp_path / "ember.db").is_file()


def _turn(database: Database, conversation: Conversation, question: str) -> None:
    with database.session() as session:
        record_turn(
            session,
            conversation=conversation,
            user_id="U1",
            source="mention",
            question=question,
            question_ts=None,
            answer=f"answer to {question}",
            answer_ts=None,
            model_version="v1",
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=5,
            asked_at=utcnow(),
        )


def test_conversation_turns_are_scoped_to_one_thread_of_one_channel(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    here = Conversation("T1", "C1", "channel", "100.1")
    _turn(database, here, "first")
    _turn(database, here, "second")
    _turn(database, Conversation("T1", "C1", "channel", "200.1"), "other thread")
    _turn(database, Conversation("T1", "C2", "channel", "100.1"), "other channel, same ts")
    _turn(database, Conversation("T2", "C1", "channel", "100.1"), "other workspace")
    with database.session() as session:
        turns = conversation_turns(session, conversation=here)
    assert [turn.question for turn in turns] == ["first", "second"]


def test_an_event_is_claimed_once_until_it_fails_or_its_lease_runs_out(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    lease = timedelta(minutes=10)
    with database.session() as session:
        assert claim_event(session, event_id="Ev1", lease=lease)
        assert not claim_event(session, event_id="Ev1", lease=lease), "still being answered"
        finish_event(session, event_id="Ev1", ok=True)
        assert not claim_event(session, event_id="Ev1", lease=lease), "already answered"
        assert event_status(session, event_id="Ev1") == "done"

        assert claim_event(session, event_id="Ev2", lease=lease)
        finish_event(session, event_id="Ev2", ok=False)
        assert claim_event(session, event_id="Ev2", lease=lease), "a failed attempt may be retried"

        assert claim_event(session, event_id="Ev3", lease=timedelta(seconds=-1))
        assert claim_event(session, event_id="Ev3", lease=lease), "the worker died: its lease ran out"

    # The record outlives the process: a new Database on the same file still knows Ev1.
    database.close()
    with open_db(tmp_path).session() as session:
        assert not claim_event(session, event_id="Ev1", lease=lease)
