"""The memory store and its hybrid search: a real SQLite file and a real PostgreSQL database, the real
MiniLM embedder, and the visibility rule checked from every side (with the vector index and without it)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.memory import (
    KEEP,
    NewMemory,
    add_memories,
    add_memory,
    delete_memories,
    delete_turn_memories,
    delete_user_memories,
    reembed_memories,
    update_memory_text,
)
from db.repo import Conversation, record_turn
from db.schema import Memory
from db.search import _affordable_terms, _like_statement, keyword_search, query_terms, search_memories, vector_search
from db.session import Database
from db.vector_index import VectorIndex
from db.visibility import Audience, can_see
from models.embeddings import Embedder, from_bytes

T1, T2 = "T0001", "T0002"


@pytest.fixture(params=["index", "sql"])
def index(request: pytest.FixtureRequest, embedder: Embedder) -> VectorIndex | None:
    """Every search test runs with the in-process index and with the SQL-only fallback."""
    return VectorIndex(model=embedder.name) if request.param == "index" else None


def remember(
    session: Session,
    embedder: Embedder,
    index: VectorIndex | None,
    said: str,
    *,
    workspace: str = T1,
    channel: str = "C1",
    channel_type: str = "channel",
    kind: str = "fact",
    user: str = "U1",
    question: str | None = None,
    turn_id: int | None = None,
) -> int:
    memory = add_memory(
        session,
        embedder=embedder,
        workspace_id=workspace,
        channel_id=channel,
        channel_type=channel_type,
        user_id=user,
        kind=kind,
        text=said,
        question=question,
        turn_id=turn_id,
        index=index,
    )
    return memory.id


def search(
    db: Database, embedder: Embedder, index: VectorIndex | None, audience: Audience, query: str, **options: Any
) -> list[int]:
    with db.session() as session:
        hits = search_memories(session, audience=audience, query=query, embedder=embedder, index=index, **options)
        for hit in hits:
            assert can_see(audience, session.get(Memory, hit.memory_id))  # type: ignore[arg-type]
        return [hit.memory_id for hit in hits]


DISTRACTORS = [
    "Payroll runs on the 25th of each month.",
    "The staging database is backed up every night at 02:00.",
    "Lunch & learn on Rust this Thursday at noon.",
    "The VPN client needs to be version 5 or newer on laptops.",
    "Ask Dana in #it-help for a new laptop charger.",
    "The deploy freeze starts on December 18th.",
]


def fill(session: Session, embedder: Embedder, index: VectorIndex | None) -> None:
    with_channels = zip(DISTRACTORS, ["C1", "C2", "C3", "C1", "C2", "C3"], strict=True)
    for said, channel in with_channels:
        remember(session, embedder, index, said, channel=channel)


# --- retrieval ---------------------------------------------------------------------------------


def test_a_correction_is_found_by_a_paraphrase_from_another_public_channel(
    db: Database, embedder: Embedder, index: VectorIndex | None
) -> None:
    with db.session() as session:
        fill(session, embedder, index)
        vpn = remember(session, embedder, index, "No, the VPN host is vpn.acme.internal", kind="correction")
    with db.session() as session:
        hits = search_memories(
            session,
            audience=Audience(T1, "C2"),
            query="what's the hostname for the vpn?",
            embedder=embedder,
            index=index,
        )
    assert hits[0].memory_id == vpn
    assert (hits[0].kind, hits[0].channel_id, hits[0].text) == (
        "correction",
        "C1",
        "No, the VPN host is vpn.acme.internal",
    )
    assert hits[0].similarity is not None and hits[0].similarity > 0.5
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_kinds_and_k_narrow_the_results(db: Database, embedder: Embedder, index: VectorIndex | None) -> None:
    with db.session() as session:
        fill(session, embedder, index)
        vpn = remember(session, embedder, index, "No, the VPN host is vpn.acme.internal", kind="correction")
    audience = Audience(T1, "C2")
    assert search(db, embedder, index, audience, "vpn hostname", kinds={"correction"}) == [vpn]
    assert vpn not in search(db, embedder, index, audience, "vpn hostname", kinds={"fact", "turn"})
    assert len(search(db, embedder, index, audience, "vpn hostname", k=2)) == 2
    assert search(db, embedder, index, audience, "vpn hostname", kinds=set()) == []
    assert search(db, embedder, index, audience, "   ") == []


# --- visibility ----------------------------------------------------------------------------------

SECRET_DM = "My VPN password is hunter2, please keep it between us"
SECRET_GROUP = "The acquisition of Initech closes on March 3rd"
ATTACKS = [
    SECRET_DM,
    SECRET_GROUP,
    "hunter2",
    '"hunter2"',
    "what is my vpn password?",
    "acquisition Initech March",
    "Initech OR hunter2 OR password",
    "hunter* NEAR(password vpn)",
    "text:hunter2",
]


def store_secrets(db: Database, embedder: Embedder, index: VectorIndex | None) -> tuple[int, int, int]:
    with db.session() as session:
        fill(session, embedder, index)
        dm = remember(session, embedder, index, SECRET_DM, channel="D1", channel_type="im")
        group = remember(session, embedder, index, SECRET_GROUP, channel="G1", channel_type="group")
        other_team = remember(session, embedder, index, SECRET_DM, workspace=T2, channel="C1")
    return dm, group, other_team


@pytest.mark.parametrize(
    "audience",
    [Audience(T1, "C1"), Audience(T1, "C9"), Audience(T1, "D2"), Audience(T1, "G2"), Audience(T2, "D1")],
    ids=["public", "other-public", "other-dm", "other-private", "same-dm-id-other-workspace"],
)
def test_a_private_memory_is_never_returned_outside_its_conversation(
    db: Database, embedder: Embedder, index: VectorIndex | None, audience: Audience
) -> None:
    dm, group, _ = store_secrets(db, embedder, index)
    for attack in ATTACKS:
        found = search(db, embedder, index, audience, attack, k=50)
        assert dm not in found and group not in found, attack
    with db.session() as session:
        keyword = keyword_search(session, audience=audience, query="hunter2 Initech acquisition", k=50)
        vector = embedder.embed([SECRET_DM])[0]
        nearest = vector_search(session, audience=audience, vector=vector, model=embedder.name, k=50, index=index)
    assert {dm, group}.isdisjoint(keyword)
    assert {dm, group}.isdisjoint(memory_id for memory_id, _ in nearest)


def test_a_private_memory_is_returned_in_its_own_conversation(
    db: Database, embedder: Embedder, index: VectorIndex | None
) -> None:
    dm, group, _ = store_secrets(db, embedder, index)
    assert search(db, embedder, index, Audience(T1, "D1"), "what is my vpn password?")[0] == dm
    assert search(db, embedder, index, Audience(T1, "G1"), "when does the Initech deal close?")[0] == group


def test_nothing_crosses_workspaces(db: Database, embedder: Embedder, index: VectorIndex | None) -> None:
    _, _, other_team = store_secrets(db, embedder, index)
    for audience in (Audience(T1, "C1"), Audience(T1, "D1")):
        for attack in ATTACKS:
            assert other_team not in search(db, embedder, index, audience, attack, k=50)
    assert search(db, embedder, index, Audience(T2, "C7"), SECRET_DM)[0] == other_team
    assert search(db, embedder, index, Audience("T9999", "C1"), SECRET_DM) == []


def test_public_memories_are_visible_in_dms_of_the_same_workspace(
    db: Database, embedder: Embedder, index: VectorIndex | None
) -> None:
    with db.session() as session:
        fill(session, embedder, index)
    assert len(search(db, embedder, index, Audience(T1, "D5"), "when is payroll?", k=10)) == len(DISTRACTORS)


def test_keyword_search_ranks_the_memory_sharing_most_words_first(db: Database, embedder: Embedder) -> None:
    with db.session() as session:
        fill(session, embedder, None)
        freeze = remember(session, embedder, None, "The deploy freeze ends on January 5th; deploys resume after.")
        laptops = remember(session, embedder, None, "New laptops ship with the VPN client preinstalled.")
    audience = Audience(T1, "C9")
    with db.session() as session:
        ranked = keyword_search(session, audience=audience, query="When does the deploy freeze end?", k=3)
        assert ranked[0] == freeze, "it shares deploy, freeze and (stemmed) end"
        assert laptops in keyword_search(session, audience=audience, query="laptop", k=5), "plural found by stem"
        assert keyword_search(session, audience=audience, query="kubernetes", k=5) == []


def test_a_host_named_in_the_question_finds_its_memory_by_keyword(db: Database, embedder: Embedder) -> None:
    with db.session() as session:
        fill(session, embedder, None)
        host = remember(session, embedder, None, "No, the VPN host is vpn.acme.internal", kind="correction")
        remember(session, embedder, None, "The acme internal wiki lives at wiki.acme.io")
    with db.session() as session:
        found = keyword_search(session, audience=Audience(T1, "C2"), query="is vpn.acme.internal down?", k=3)
    assert found[0] == host


def test_keyword_search_keeps_private_memories_private(db: Database, embedder: Embedder) -> None:
    dm, group, other_team = store_secrets(db, embedder, None)
    query = "hunter2 Initech acquisition"
    with db.session() as session:
        assert keyword_search(session, audience=Audience(T1, "D1"), query=query, k=50) == [dm]
        assert keyword_search(session, audience=Audience(T1, "G1"), query=query, k=50) == [group]
        assert keyword_search(session, audience=Audience(T2, "C5"), query=query, k=50) == [other_team]
        assert keyword_search(session, audience=Audience(T1, "C1"), query=query, k=50) == []


# --- keeping the store, the keyword index and the vector index in step ---------------------------


def fts_rowids(db: Database, word: str) -> list[int]:
    """The memories the keyword index finds `word` in: SQLite's FTS5 table, PostgreSQL's GIN index."""
    if db.is_sqlite:
        query = text("SELECT rowid FROM memories_fts WHERE memories_fts MATCH :q").bindparams(q=f'"{word}"')
    else:
        words = "to_tsvector('english', translate(text || ' ' || coalesce(question, ''), '.@/:-', '     '))"
        query = text(f"SELECT id FROM memories WHERE {words} @@ to_tsquery('english', :q)").bindparams(q=f"'{word}'")
    with db.session() as session:
        return [row[0] for row in session.execute(query)]


def test_deleting_removes_the_row_the_keyword_entry_and_the_vector(db: Database, embedder: Embedder) -> None:
    index = VectorIndex(model=embedder.name)
    dm, group, _ = store_secrets(db, embedder, index)
    assert fts_rowids(db, "hunter2") and dm in index
    with db.session() as session:
        assert delete_memories(session, memory_ids=[dm, dm, 987654], index=index) == 1
    with db.session() as session:
        assert session.get(Memory, dm) is None
    assert dm not in fts_rowids(db, "hunter2")
    assert dm not in index and group in index
    assert dm not in search(db, embedder, index, Audience(T1, "D1"), SECRET_DM, k=50)


def test_deleting_a_users_memories_and_a_turns_memories(db: Database, embedder: Embedder) -> None:
    index = VectorIndex(model=embedder.name)
    conversation = Conversation(T1, "C1", "channel", None)
    with db.session() as session:
        turn = record_turn(
            session,
            conversation=conversation,
            user_id="U2",
            source="mention",
            question="where is the wiki?",
            question_ts=None,
            answer="wiki.acme.io",
            answer_ts=None,
            model_version="v0",
            prompt_tokens=0,
            completion_tokens=0,
            latency_ms=1,
            asked_at=datetime.now(UTC),
        )
        from_turn = remember(session, embedder, index, "The wiki is at wiki.acme.io", kind="turn", turn_id=turn.id)
        by_u3 = [remember(session, embedder, index, f"note {i} about the offsite", user="U3") for i in range(3)]
        elsewhere = remember(session, embedder, index, "note about the offsite", user="U3", workspace=T2)
    with db.session() as session:
        assert delete_user_memories(session, workspace_id=T1, user_id="U3", index=index) == 3
        assert delete_turn_memories(session, turn_ids=[turn.id], index=index) == 1
    assert all(memory_id not in index for memory_id in [*by_u3, from_turn])
    assert elsewhere in index and len(index) == 1
    with db.session() as session:
        assert session.scalars(select(Memory.id)).all() == [elsewhere]


def test_updating_re_embeds_and_re_indexes(db: Database, embedder: Embedder, index: VectorIndex | None) -> None:
    with db.session() as session:
        fill(session, embedder, index)
        memory_id = remember(session, embedder, index, "The VPN host is vpn.acme.internal", question="vpn host?")
    new_text = "The office wifi password is printed on the fridge"
    with db.session() as session:
        updated = update_memory_text(session, embedder=embedder, memory_id=memory_id, text=new_text, index=index)
        assert updated is not None and updated.question == "vpn host?"
        updated = update_memory_text(
            session, embedder=embedder, memory_id=memory_id, text=new_text, question=None, index=index
        )
        assert updated is not None and updated.question is None
        assert update_memory_text(session, embedder=embedder, memory_id=424242, text="x", question=KEEP) is None
    with db.session() as session:
        row = session.get(Memory, memory_id)
        assert row is not None and row.embedding is not None
        np.testing.assert_allclose(from_bytes(row.embedding), embedder.embed([new_text])[0], atol=1e-5)
    assert fts_rowids(db, "fridge") == [memory_id] and fts_rowids(db, "acme") == []
    audience = Audience(T1, "C2")
    assert search(db, embedder, index, audience, "where can I find the wireless password?")[0] == memory_id
    with db.session() as session:
        vector = embedder.embed(["wifi password on the fridge"])[0]
        nearest = vector_search(session, audience=audience, vector=vector, model=embedder.name, k=1, index=index)
    assert nearest[0][0] == memory_id and nearest[0][1] > 0.6


def test_a_rolled_back_add_leaves_nothing_in_the_index(db: Database, embedder: Embedder) -> None:
    index = VectorIndex(model=embedder.name)
    with pytest.raises(RuntimeError), db.session() as session:
        remember(session, embedder, index, "this never happened")
        raise RuntimeError("the handler failed")
    assert len(index) == 0
    with db.session() as session:
        assert session.scalars(select(Memory)).all() == []


def test_the_index_built_from_the_database_matches_the_one_kept_in_step(db: Database, embedder: Embedder) -> None:
    kept = VectorIndex(model=embedder.name)
    store_secrets(db, embedder, kept)
    with db.session() as session:
        built = VectorIndex.build(session, model=embedder.name)
        assert built.partition_sizes() == kept.partition_sizes()
        assert VectorIndex.build(session, model="another-model").partition_sizes() == {}
    vector = embedder.embed(["vpn password"])[0]
    for audience in (Audience(T1, "C1"), Audience(T1, "D1"), Audience(T2, "C1")):
        assert built.search(audience, vector, k=5) == kept.search(audience, vector, k=5)


def test_bulk_add_and_reembedding(db: Database, embedder: Embedder) -> None:
    items = [NewMemory(T1, "C1", "channel", "U1", "fact", said) for said in DISTRACTORS]
    with db.session() as session:
        ids = add_memories(session, embedder=embedder, items=items)
        session.execute(text("UPDATE memories SET embedding_model = 'old-model' WHERE id = :id"), {"id": ids[0]})
    with db.session() as session:
        assert reembed_memories(session, embedder=embedder) == 1
        assert reembed_memories(session, embedder=embedder) == 0
        index = VectorIndex.build(session, model=embedder.name)
    assert len(index) == len(items)
    assert search(db, embedder, index, Audience(T1, "C1"), "when do we get paid?")[0] == ids[0]


def test_unknown_kinds_are_refused(db: Database, embedder: Embedder) -> None:
    with db.session() as session, pytest.raises(ValueError, match="kind"):
        remember(session, embedder, None, "hello", kind="gossip")


# --- hostile query text --------------------------------------------------------------------------

NASTY = [
    '"',
    '""',
    'vpn "host',
    "vpn AND",
    "AND OR NOT",
    "vpn*",
    "*",
    "-vpn",
    "vpn -host",
    "(vpn",
    "vpn)",
    "((vpn) OR (host))",
    "NEAR(vpn host, 2)",
    "text: vpn",
    "question:vpn",
    "^vpn",
    "vpn + host",
    "{text question}: vpn",
    "'; DROP TABLE memories; --",
    "%_%",
    "\\",
    "🙂 vpn ü",
    "x" * 5000,
]


@pytest.mark.parametrize("query", NASTY)
def test_fts_syntax_in_a_query_never_raises(db: Database, embedder: Embedder, query: str) -> None:
    index = VectorIndex(model=embedder.name)
    with db.session() as session:
        fill(session, embedder, index)
        remember(session, embedder, index, "No, the VPN host is vpn.acme.internal", kind="correction")
    audience = Audience(T1, "C1")
    assert len(search(db, embedder, index, audience, query)) == 5
    with db.session() as session:
        keyword_search(session, audience=audience, query=query, k=5)
        if query_terms(query):
            list(session.scalars(_like_statement(audience, query_terms(query), 5)))
    with db.session() as session:
        assert session.scalar(select(Memory.id).where(Memory.id == 1)) == 1


def test_keyword_fallback_without_fts_ranks_and_filters(db: Database, embedder: Embedder) -> None:
    """Databases other than SQLite search with LIKE; run that statement here to check it."""
    dm, _, _ = store_secrets(db, embedder, None)
    with db.session() as session:
        public = list(session.scalars(_like_statement(Audience(T1, "C1"), ["vpn", "host"], 5)))
        private = list(session.scalars(_like_statement(Audience(T1, "D1"), ["hunter2"], 5)))
        hidden = list(session.scalars(_like_statement(Audience(T1, "C1"), ["hunter2"], 5)))
    assert public and dm not in public
    assert private == [dm] and hidden == []


def test_importing_db_memory_does_not_import_torch() -> None:
    code = "import sys, db.memory, db; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_words_too_common_to_rank_by_are_left_to_the_vector_half(
    db: Database, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [NewMemory(T1, "C1", "channel", "U1", "turn", f"standup notes for day {i}") for i in range(30)]
    items.append(NewMemory(T1, "C1", "channel", "U1", "fact", "standup moved to the zebra room"))
    with db.session() as session:
        ids = add_memories(session, embedder=embedder, items=items)
    monkeypatch.setattr("db.search.KEYWORD_BUDGET", 10)
    with db.session() as session:
        # "standup" is in 31 memories, over the budget: only the rare word is ranked.
        assert _affordable_terms(session, ["standup", "zebra", "unicorn"]) == ["zebra"]
        assert keyword_search(session, audience=Audience(T1, "C1"), query="standup zebra", k=5) == [ids[-1]]
        assert keyword_search(session, audience=Audience(T1, "C1"), query="standup", k=5) == []
        hits = search_memories(session, audience=Audience(T1, "C1"), query="standup", embedder=embedder, k=3)
    assert len(hits) == 3


def test_a_memory_that_answered_a_question_is_embedded_as_the_pair_and_as_the_answer(
    db: Database, embedder: Embedder
) -> None:
    question, answer = "What is the VPN host?", "No, the VPN host is vpn.acme.internal"
    with db.session() as session:
        [with_question, fact] = add_memories(
            session,
            embedder=embedder,
            items=[
                NewMemory(T1, "C1", "channel", "U1", "correction", answer, question),
                NewMemory(T1, "C1", "channel", "U1", "fact", answer),
            ],
        )
    joint, alone = embedder.embed([f"{question}\n{answer}", answer])
    expected = (joint + alone) / np.linalg.norm(joint + alone)
    with db.session() as session:
        stored = {m.id: from_bytes(m.embedding) for m in session.scalars(select(Memory)) if m.embedding}
    np.testing.assert_allclose(stored[with_question], expected, atol=1e-5)
    np.testing.assert_allclose(stored[fact], alone, atol=1e-5)  # no question: the text alone
    assert abs(float(np.linalg.norm(stored[with_question])) - 1.0) < 1e-5


def test_opening_recall_embeds_memories_stored_without_a_vector(db: Database, embedder: Embedder) -> None:
    from handlers.qa.recall import Recall

    with db.session() as session:  # how db.feedback stores a correction when no embedder is at hand
        said, question = "No, the build host is zephyr-7", "build host?"
        session.add(Memory(workspace_id=T1, channel_id="C1", channel_type="channel", user_id="U1",
                           kind="correction", text=said, question=question))  # fmt: skip
    recall = Recall.open(db, embedder)
    with db.session() as session:
        [row] = session.scalars(select(Memory))
        assert row.embedding is not None and row.embedding_model == embedder.name
        hits = search_memories(
            session, audience=Audience(T1, "C2"), query="which machine builds?", embedder=embedder, index=recall.index
        )
    assert [hit.memory_id for hit in hits] == [row.id]


# --- written as the rules say: redacted, with or without a vector --------------------------------

SLACK_TOKEN = "xoxb-1234567890-abcdefgh"


def test_secrets_are_redacted_as_memories_are_written(db: Database, embedder: Embedder) -> None:
    index = VectorIndex(model=embedder.name)
    with db.session() as session:
        one = remember(
            session, embedder, index, f"The deploy bot token is {SLACK_TOKEN}", question=f"is {SLACK_TOKEN} ours?"
        )
        [many] = add_memories(
            session, embedder=embedder, items=[NewMemory(T1, "C1", "channel", "U1", "fact", f"use {SLACK_TOKEN}")]
        )
        changed = remember(session, embedder, index, "nothing secret yet")
        update_memory_text(
            session, embedder=embedder, memory_id=changed, text=f"now {SLACK_TOKEN}", question=SLACK_TOKEN
        )
    with db.session() as session:
        rows = {row.id: row for row in session.scalars(select(Memory))}
    assert rows[one].text == "The deploy bot token is [redacted]"
    assert rows[one].question == "is [redacted] ours?"
    assert rows[many].text == "use [redacted]"
    assert (rows[changed].text, rows[changed].question) == ("now [redacted]", "[redacted]")
    assert fts_rowids(db, "abcdefgh") == []


def test_a_memory_stored_without_an_embedder_has_no_vector_until_reembedded(db: Database, embedder: Embedder) -> None:
    index = VectorIndex(model=embedder.name)
    with db.session() as session:
        memory = add_memory(
            session,
            embedder=None,
            workspace_id=T1,
            channel_id="C1",
            channel_type="channel",
            user_id="U1",
            kind="correction",
            text="No, the build host is zephyr-7",
            question="build host?",
            index=index,
        )
        memory_id = memory.id
    with db.session() as session:
        row = session.get(Memory, memory_id)
        assert row is not None and row.embedding is None and row.embedding_model is None
    assert memory_id not in index and len(index) == 0
    assert fts_rowids(db, "zephyr") == [memory_id]  # found by its words at once
    with db.session() as session:
        assert reembed_memories(session, embedder=embedder, index=index) == 1
    assert memory_id in index
    assert search(db, embedder, index, Audience(T1, "C2"), "which machine builds?")[0] == memory_id
