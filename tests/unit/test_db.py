from __future__ import annotations

import itertools
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text, update

from bot.settings import SettingsError, load_settings
from db import Database
from db.assistant import find_thread, popular_questions, set_context, take_title, thread_started
from db.claims import MAX_ATTEMPTS, Claim, claim_event, event_status, finish_event, heartbeat, note_reply, take_orphans
from db.repo import Conversation, conversation_turns, record_turn
from db.schema import HandledEvent, Instance, utcnow
from db.search import _tsquery_statement, keyword_search
from db.session import DatabaseURLError, alembic_config
from db.visibility import Audience

# The newest migration: where every upgrade ends.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


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


def test_conversation_turns_are_scoped_to_one_thread_of_one_channel(db: Database) -> None:
    here = Conversation("T1", "C1", "channel", "100.1")
    _turn(db, here, "first")
    _turn(db, here, "second")
    _turn(db, Conversation("T1", "C1", "channel", "200.1"), "other thread")
    _turn(db, Conversation("T1", "C2", "channel", "100.1"), "other channel, same ts")
    _turn(db, Conversation("T2", "C1", "channel", "100.1"), "other workspace")
    with db.session() as session:
        turns = conversation_turns(session, conversation=here)
    assert [turn.question for turn in turns] == ["first", "second"]


def test_assistant_threads_are_kept_once_titled_once_and_suggest_only_what_their_person_may_see(
    db: Database,
) -> None:
    with db.session() as session:
        for _ in range(2):  # Slack may send the event twice
            thread_started(
                session, workspace_id="T1", channel_id="D1", thread_ts="9.1", user_id="U1", context_channel_id="C1"
            )
        set_context(session, channel_id="D1", thread_ts="9.1", context_channel_id="C2")
    with db.session() as session:
        thread = find_thread(session, channel_id="D1", thread_ts="9.1")
        assert thread is not None and (thread.user_id, thread.context_channel_id) == ("U1", "C2")
        assert [take_title(session, channel_id="D1", thread_ts="9.1") for _ in range(2)] == [True, False]

    public, secret, own_dm = (
        Conversation("T1", c, k, None) for c, k in [("C1", "channel"), ("G1", "group"), ("D1", "im")]
    )
    for conversation, question, times in [
        (public, "How do I deploy?", 3),
        (public, "how do I deploy? ", 1),  # the same question, asked a little differently
        (public, "Where is the style guide?", 2),
        (secret, "When is the secret launch?", 5),
        (own_dm, "What is my VPN password?", 1),
        (Conversation("T2", "C9", "channel", None), "Other workspace question?", 9),
    ]:
        for _ in range(times):
            _turn(db, conversation, question)
    with db.session() as session:
        asked = popular_questions(session, audience=Audience("T1", "D1"), since=utcnow() - timedelta(days=7), limit=4)
    assert asked == ["How do I deploy?", "Where is the style guide?", "What is my VPN password?"]


def test_an_event_is_claimed_once_until_it_fails_or_its_lease_runs_out(db: Database) -> None:
    lease = timedelta(minutes=10)
    taken, held = Claim.TAKEN, Claim.HELD
    with db.session() as session:
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

    # The record outlives the process: a new Database on the same URL still knows Ev1.
    db.close()
    again = Database(db.url)
    with again.session() as session:
        assert claim_event(session, event_id="Ev1", lease=lease) is held
    again.close()


def _stop_beating(database: Database, owner: str) -> None:
    with database.session() as session:
        a_minute_ago = utcnow() - timedelta(minutes=1)
        session.execute(update(Instance).where(Instance.id == owner).values(heartbeat_at=a_minute_ago))


def test_a_claim_whose_owner_stopped_beating_is_taken_over_by_its_redelivery(db: Database) -> None:
    lease, stale = timedelta(minutes=10), timedelta(seconds=30)
    envelope = {"event_id": "Ev1", "event": {"type": "app_mention", "text": "hi"}}
    with db.session() as session:
        heartbeat(session, owner="alive")
        heartbeat(session, owner="dead")
        assert claim_event(session, event_id="Ev1", lease=lease, owner="dead", work=envelope) is Claim.TAKEN
        assert claim_event(session, event_id="Ev2", lease=lease, owner="alive", work=envelope) is Claim.TAKEN
    _stop_beating(db, "dead")
    with db.session() as session:
        assert claim_event(session, event_id="Ev2", lease=lease, owner="new", stale_after=stale) is Claim.HELD
        assert claim_event(session, event_id="Ev1", lease=lease, owner="new", stale_after=stale) is Claim.TAKEN
        row = session.get(HandledEvent, "Ev1")
        assert row is not None and (row.owner, row.attempts) == ("new", 2)
        assert json.loads(row.work or "") == envelope, "the claim still knows what to answer"


def test_a_live_process_takes_over_the_claims_of_a_dead_one_once(db: Database) -> None:
    lease, stale = timedelta(minutes=10), timedelta(seconds=30)
    with db.session() as session:
        for owner in ("dead", "alive"):
            heartbeat(session, owner=owner)
        for number in range(3):
            claim_event(session, event_id=f"Dead{number}", lease=lease, owner="dead", work={"n": number})
        note_reply(session, event_id="Dead1", ts="111.1")
        note_reply(session, event_id="Dead1", ts="111.2")
        claim_event(session, event_id="Alive", lease=lease, owner="alive", work={"n": 9})
        claim_event(session, event_id="Done", lease=lease, owner="dead", work={"n": 8})
        finish_event(session, event_id="Done", ok=True)
    _stop_beating(db, "dead")
    with db.session() as session:
        orphans = take_orphans(session, owner="alive", lease=lease, stale_after=stale)
    assert [(o.event_id, o.work, o.replies, o.outcome) for o in orphans] == [
        ("Dead0", {"n": 0}, [], Claim.TAKEN),
        ("Dead1", {"n": 1}, ["111.1", "111.2"], Claim.TAKEN),
        ("Dead2", {"n": 2}, [], Claim.TAKEN),
    ]
    with db.session() as session:
        assert take_orphans(session, owner="alive", lease=lease, stale_after=stale) == [], "alive's own now"
        assert take_orphans(session, owner="third", lease=lease, stale_after=stale) == [], "alive still beats"


def test_a_claim_that_keeps_dying_is_given_up_once(db: Database) -> None:
    lease, stale = timedelta(minutes=10), timedelta(seconds=30)
    owners = [f"process-{n}" for n in range(MAX_ATTEMPTS + 2)]
    with db.session() as session:
        heartbeat(session, owner=owners[0])
        claim_event(session, event_id="Ev1", lease=lease, owner=owners[0], work={"n": 1})
    outcomes = []
    for previous, owner in itertools.pairwise(owners):
        _stop_beating(db, previous)  # it died answering; the next process starts
        with db.session() as session:
            heartbeat(session, owner=owner)
            outcomes += [o.outcome for o in take_orphans(session, owner=owner, lease=lease, stale_after=stale)]
    assert outcomes == [Claim.TAKEN] * (MAX_ATTEMPTS - 1) + [Claim.GIVE_UP]
    with db.session() as session:
        assert event_status(session, event_id="Ev1") == "given_up"
        assert claim_event(session, event_id="Ev1", lease=lease, owner="late") is Claim.HELD, "a retry stays quiet"


# --- PostgreSQL beside SQLite ---------------------------------------------------------------------


def test_migrations_build_the_schema_on_postgresql_with_a_keyword_index(postgres_url: str) -> None:
    database = Database(postgres_url)
    database.upgrade()
    database.upgrade()  # a second upgrade at the next start is a no-op
    tables = set(inspect(database.engine).get_table_names())
    assert {"turns", "handled_events", "instances", "memories", "votes", "digest_runs", "alembic_version"} <= tables
    assert "memories_fts" not in tables, "FTS5 is SQLite's; PostgreSQL searches with its own index"
    with database.session() as session:
        index = session.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_memories_fts'"))
        assert session.scalar(text("SELECT version_num FROM alembic_version")) == HEAD
    assert index is not None and "USING gin (to_tsvector('english'" in index
    database.close()


def test_replicas_starting_at_once_migrate_a_new_postgresql_database_once(postgres_url: str) -> None:
    replicas = [Database(postgres_url) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))

    def start(database: Database) -> None:
        barrier.wait()
        database.upgrade()

    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        list(pool.map(start, replicas))  # raises if any of them failed
    with replicas[0].session() as session:
        assert session.scalars(text("SELECT version_num FROM alembic_version")).all() == [HEAD]
    for database in replicas:
        database.close()


def test_migrations_go_down_to_nothing_and_up_again(db: Database) -> None:
    config = alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    db.upgrade()
    assert {"turns", "memories", "votes", "instances"} <= set(inspect(db.engine).get_table_names())


def test_the_keyword_search_on_postgresql_uses_its_index(postgres_url: str) -> None:
    database = Database(postgres_url)
    database.upgrade()
    with database.session() as session:
        session.execute(
            text(
                "INSERT INTO memories (workspace_id, channel_id, channel_type, user_id, kind, text,"
                " created_at, updated_at) SELECT 'T1', 'C1', 'channel', 'U1', 'fact',"
                " 'standup notes for day ' || n, now(), now() FROM generate_series(1, 5000) AS n"
            )
        )
        session.execute(
            text(
                "INSERT INTO memories (workspace_id, channel_id, channel_type, user_id, kind, text,"
                " created_at, updated_at) VALUES ('T1', 'C1', 'channel', 'U1', 'fact', :said, now(), now())"
            ),
            {"said": "The standup moved to the zebra room"},
        )
    with database.engine.begin() as connection:
        connection.execute(text("ANALYZE memories"))  # as autovacuum would: the planner costs by these figures
    stmt = _tsquery_statement(Audience("T1", "C1"), ["zebra"], 5)
    with database.session() as session:
        compiled = stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))
        found = keyword_search(session, audience=Audience("T1", "C1"), query="the zebra room", k=5)
    assert "ix_memories_fts" in plan, plan
    assert len(found) == 1
    database.close()


def test_concurrent_claims_of_one_event_take_it_once(db: Database) -> None:
    """Replicas share the database: when several claim the same event at once, exactly one answers it."""
    owners = [f"replica-{n}" for n in range(6)]
    with db.session() as session:
        for owner in owners:
            heartbeat(session, owner=owner)
    barrier = threading.Barrier(len(owners))

    def claim(owner: str) -> Claim:
        barrier.wait()
        with db.session() as session:
            return claim_event(session, event_id="Ev1", lease=timedelta(minutes=10), owner=owner, work={"o": owner})

    with ThreadPoolExecutor(max_workers=len(owners)) as pool:
        outcomes = list(pool.map(claim, owners))
    assert sorted(outcome.value for outcome in outcomes) == ["held"] * 5 + ["taken"]
    with db.session() as session:
        row = session.get(HandledEvent, "Ev1")
        assert row is not None and row.attempts == 1 and row.status == "claimed"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not a url", "not a SQLAlchemy URL"),
        ("nosuchdb://somewhere/ember", "'nosuchdb' is not a database SQLAlchemy knows"),
        ("oracle+oracledb://ember:s3cret@db/ember", "the driver for oracle+oracledb is not installed"),
    ],
)
def test_an_unusable_database_url_is_refused_naming_the_setting(url: str, said: str) -> None:
    with pytest.raises(DatabaseURLError, match=re.escape(said)):
        Database(url)
    with pytest.raises(SettingsError) as refused:
        load_settings(database_url=url)
    assert str(refused.value).startswith("EMBER_DATABASE_URL is invalid") and said in str(refused.value)
    assert "s3cret" not in str(refused.value), "a password in the URL is never echoed"


def test_a_postgresql_url_is_taken_as_it_is(postgres_url: str) -> None:
    settings = load_settings(database_url=postgres_url)
    assert settings.resolved_database_url == postgres_url
    database = Database(settings.resolved_database_url)
    assert not database.is_sqlite
    database.close()
