from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import inspect, text, update

from db import Database
from db.claims import MAX_ATTEMPTS, Claim, claim_event, event_status, finish_event, heartbeat, note_reply, take_orphans
from db.repo import Conversation, conversation_turns, record_turn
from db.schema import HandledEvent, Instance, utcnow


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
    taken, held = Claim.TAKEN, Claim.HELD
    with database.session() as session:
        assert claim_event(session, event_id="Ev1", lease=lease) is taken
        assert claim_event(session, event_id="Ev1", lease=lease) is held, "still being answered"
        finish_event(session, event_id="Ev1", ok=True)
        assert claim_event(session, event_id="Ev1", lease=lease) is held, "already answered"
        assert event_status(session, event_id="Ev1") == "done"

        assert claim_event(session, event_id="Ev2", lease=lease) is taken
        finish_event(session, event_id="Ev2", ok=False)
        assert claim_event(session, event_id="Ev2", lease=lease) is taken, "a failed attempt may be retried"

        assert claim_event(session, event_id="Ev3", lease=timedelta(seconds=-1)) is taken
        assert claim_event(session, event_id="Ev3", lease=lease) is taken, "the worker died: its lease ran out"

    # The record outlives the process: a new Database on the same file still knows Ev1.
    database.close()
    with open_db(tmp_path).session() as session:
        assert claim_event(session, event_id="Ev1", lease=lease) is held


def _stop_beating(database: Database, owner: str) -> None:
    with database.session() as session:
        a_minute_ago = utcnow() - timedelta(minutes=1)
        session.execute(update(Instance).where(Instance.id == owner).values(heartbeat_at=a_minute_ago))


def test_a_claim_whose_owner_stopped_beating_is_taken_over_by_its_redelivery(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    lease, stale = timedelta(minutes=10), timedelta(seconds=30)
    envelope = {"event_id": "Ev1", "event": {"type": "app_mention", "text": "hi"}}
    with database.session() as session:
        heartbeat(session, owner="alive")
        heartbeat(session, owner="dead")
        assert claim_event(session, event_id="Ev1", lease=lease, owner="dead", work=envelope) is Claim.TAKEN
        assert claim_event(session, event_id="Ev2", lease=lease, owner="alive", work=envelope) is Claim.TAKEN
    _stop_beating(database, "dead")
    with database.session() as session:
        assert claim_event(session, event_id="Ev2", lease=lease, owner="new", stale_after=stale) is Claim.HELD
        assert claim_event(session, event_id="Ev1", lease=lease, owner="new", stale_after=stale) is Claim.TAKEN
        row = session.get(HandledEvent, "Ev1")
        assert row is not None and (row.owner, row.attempts) == ("new", 2)
        assert json.loads(row.work or "") == envelope, "the claim still knows what to answer"


def test_a_live_process_takes_over_the_claims_of_a_dead_one_once(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    lease, stale = timedelta(minutes=10), timedelta(seconds=30)
    with database.session() as session:
        for owner in ("dead", "alive"):
            heartbeat(session, owner=owner)
        for number in range(3):
            claim_event(session, event_id=f"Dead{number}", lease=lease, owner="dead", work={"n": number})
        note_reply(session, event_id="Dead1", ts="111.1")
        note_reply(session, event_id="Dead1", ts="111.2")
        claim_event(session, event_id="Alive", lease=lease, owner="alive", work={"n": 9})
        claim_event(session, event_id="Done", lease=lease, owner="dead", work={"n": 8})
        finish_event(session, event_id="Done", ok=True)
    _stop_beating(database, "dead")
    with database.session() as session:
        orphans = take_orphans(session, owner="alive", lease=lease, stale_after=stale)
    assert [(o.event_id, o.work, o.replies, o.outcome) for o in orphans] == [
        ("Dead0", {"n": 0}, [], Claim.TAKEN),
        ("Dead1", {"n": 1}, ["111.1", "111.2"], Claim.TAKEN),
        ("Dead2", {"n": 2}, [], Claim.TAKEN),
    ]
    with database.session() as session:
        assert take_orphans(session, owner="alive", lease=lease, stale_after=stale) == [], "alive's own now"
        assert take_orphans(session, owner="third", lease=lease, stale_after=stale) == [], "alive still beats"


def test_a_claim_that_keeps_dying_is_given_up_once(tmp_path: Path) -> None:
    database = open_db(tmp_path)
    lease, stale = timedelta(minutes=10), timedelta(seconds=30)
    owners = [f"process-{n}" for n in range(MAX_ATTEMPTS + 2)]
    with database.session() as session:
        heartbeat(session, owner=owners[0])
        claim_event(session, event_id="Ev1", lease=lease, owner=owners[0], work={"n": 1})
    outcomes = []
    for previous, owner in itertools.pairwise(owners):
        _stop_beating(database, previous)  # it died answering; the next process starts
        with database.session() as session:
            heartbeat(session, owner=owner)
            outcomes += [o.outcome for o in take_orphans(session, owner=owner, lease=lease, stale_after=stale)]
    assert outcomes == [Claim.TAKEN] * (MAX_ATTEMPTS - 1) + [Claim.GIVE_UP]
    with database.session() as session:
        assert event_status(session, event_id="Ev1") == "given_up"
        assert claim_event(session, event_id="Ev1", lease=lease, owner="late") is Claim.HELD, "a retry stays quiet"
