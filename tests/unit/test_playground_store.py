"""Saving the playground's workspace to SQLite and loading it after a restart."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from playground import LocalSlack
from playground.store import Autosave, StoreError, WorkspaceStore
from playground.workspace import ts_key

TOKEN = "xoxb-test"
IDENTITY = {"bot_token": TOKEN, "team_id": "T0001", "bot_user_id": "UBOT", "bot_id": "BBOT"}


def fresh_slack() -> LocalSlack:
    return LocalSlack(**IDENTITY)


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with fresh_slack() as fake:
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def web(slack: LocalSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.api_url)


@dataclass
class Built:
    alice: str
    bob: str
    general: str
    secret: str
    dm: str
    thread_ts: str
    edited_ts: str
    deleted_ts: str
    tombstone_ts: str


def build(slack: LocalSlack, web: WebClient) -> Built:
    """A workspace with a bit of everything a user would notice after a restart."""
    alice = slack.add_user("alice", tz="Europe/Berlin")
    bob = slack.add_user("bob", real_name="Bob B.")
    slack.add_token("xoxp-alice", alice)
    general = slack.add_channel("general", members=[alice, bob])
    secret = slack.add_channel("secret", kind="private", members=[alice])
    dm = slack.add_channel("dm-alice", kind="im", user=alice)
    slack.archive(slack.add_channel("old"))

    slack.user_message(general, alice, "good morning")
    thread_ts = slack.mention(general, bob, "what's the plan?")["event"]["ts"]
    slack.user_message(general, alice, "first reply", thread_ts=thread_ts)
    web.chat_postMessage(channel=general, thread_ts=thread_ts, text="bot reply")
    slack.user_message(general, bob, "last reply", thread_ts=thread_ts)
    slack.react(general, thread_ts, alice, "eyes")
    slack.react(general, thread_ts, bob, "eyes")
    slack.react(general, thread_ts, bob, "+1")

    edited_ts = slack.user_message(general, bob, "typo here")["event"]["ts"]
    slack.edited_message(general, edited_ts, "no typo here")
    deleted_ts = web.chat_postMessage(channel=general, text="oops")["ts"]
    web.chat_delete(channel=general, ts=deleted_ts)
    # A deleted parent with replies stays as a tombstone.
    tombstone_ts = web.chat_postMessage(channel=general, text="to be deleted")["ts"]
    slack.user_message(general, alice, "reply to a deleted parent", thread_ts=tombstone_ts)
    web.chat_delete(channel=general, ts=tombstone_ts)

    slack.user_message(secret, alice, "just us")
    slack.user_message(dm, alice, "hi bot")
    web.chat_postMessage(channel=dm, text="hi alice")
    web.chat_postEphemeral(channel=general, user=alice, text="only you see this")
    slack.response_url(general, alice)  # short-lived: not saved
    return Built(alice, bob, general, secret, dm, thread_ts, edited_ts, deleted_ts, tombstone_ts)


def save(slack: LocalSlack, path: Path) -> None:
    with WorkspaceStore(path) as store:
        store.save(slack.workspace)


def load(path: Path) -> LocalSlack:
    restored = fresh_slack()
    with WorkspaceStore(path) as store:
        assert store.load(restored.workspace)
    return restored


def snapshot(slack: LocalSlack) -> dict[str, Any]:
    ws = slack.workspace
    return {
        "users": {uid: u.info(ws.team_id) for uid, u in ws.users.items()},
        "channels": {cid: (c.name, c.kind, c.user, c.members, c.archived) for cid, c in ws.channels.items()},
        "messages": {cid: slack.messages(cid) for cid in ws.channels},
        "ephemerals": slack.ephemerals(),
        "tokens": dict(ws.tokens),
    }


# -- round trip -----------------------------------------------------------


def test_a_saved_workspace_loads_back_the_same(slack: LocalSlack, web: WebClient, tmp_path: Path) -> None:
    built = build(slack, web)
    path = tmp_path / "workspace.sqlite"
    save(slack, path)

    with load(path) as restored:
        assert snapshot(restored) == snapshot(slack)
        ws = restored.workspace
        assert list(ws.users) == list(slack.workspace.users)  # users.list keeps its order
        assert [u.id for u in ws.users.values()].count("UBOT") == 1
        assert ws.response_urls == {}
        assert ws.streaming == set()

        client = WebClient(token=TOKEN, base_url=restored.api_url)
        assert set(client.conversations_members(channel=built.general)["members"]) == {"UBOT", built.alice, built.bob}
        assert set(client.conversations_members(channel=built.secret)["members"]) == {"UBOT", built.alice}
        assert client.conversations_info(channel=built.secret)["channel"]["is_private"]
        assert client.conversations_info(channel=built.dm)["channel"]["user"] == built.alice
        assert WebClient(token="xoxp-alice", base_url=restored.api_url).auth_test()["user_id"] == built.alice

        history = client.conversations_history(channel=built.general)["messages"]
        assert [m["ts"] for m in history] == sorted((m["ts"] for m in history), key=ts_key, reverse=True)
        texts = [m["text"] for m in history]
        assert "oops" not in texts and "no typo here" in texts and "typo here" not in texts
        parent = next(m for m in history if m["ts"] == built.thread_ts)
        assert parent["reply_count"] == 3
        assert parent["reply_users"] == [built.alice, "UBOT", built.bob]
        assert {r["name"]: r["count"] for r in parent["reactions"]} == {"eyes": 2, "+1": 1}
        edited = next(m for m in history if m["ts"] == built.edited_ts)
        assert edited["edited"]["user"] == built.bob
        tombstone = next(m for m in history if m["ts"] == built.tombstone_ts)
        assert tombstone["subtype"] == "tombstone" and tombstone["reply_count"] == 1

        replies = client.conversations_replies(channel=built.general, ts=built.thread_ts)["messages"]
        assert [m["text"] for m in replies] == [parent["text"], "first reply", "bot reply", "last reply"]
        assert all(m["thread_ts"] == built.thread_ts for m in replies)
        assert [e["text"] for e in restored.ephemerals(built.general)] == ["only you see this"]


def test_the_restored_workspace_keeps_working(slack: LocalSlack, web: WebClient, tmp_path: Path) -> None:
    built = build(slack, web)
    # History dated in the future: what's posted after the restart must still come later.
    future = slack.seed(built.general, built.alice, "from the future", at=time.time() + 3600)
    path = tmp_path / "workspace.sqlite"
    save(slack, path)
    stored_ts = [m["ts"] for cid in slack.workspace.channels for m in slack.messages(cid)]
    stored_ids = set(slack.workspace.users) | set(slack.workspace.channels)

    with load(path) as restored:
        client = WebClient(token=TOKEN, base_url=restored.api_url)
        reply = client.chat_postMessage(channel=built.general, thread_ts=built.thread_ts, text="after restart")
        assert ts_key(reply["ts"]) > max(map(ts_key, stored_ts))
        assert ts_key(reply["ts"]) > ts_key(future)
        parent = restored.message(built.general, built.thread_ts)
        assert parent is not None
        assert parent["reply_count"] == 4 and parent["latest_reply"] == reply["ts"]
        assert [m["text"] for m in restored.messages(built.general, thread_ts=built.thread_ts)][-2:] == [
            "last reply",
            "after restart",
        ]
        client.chat_delete(channel=built.general, ts=reply["ts"])
        parent = restored.message(built.general, built.thread_ts)
        assert parent is not None and parent["reply_count"] == 3

        new_ids = {restored.add_user("carol"), restored.add_channel("fresh"), restored.add_channel("p", kind="private")}
        assert not new_ids & stored_ids
        assert len(set(restored.workspace.users) | set(restored.workspace.channels)) == len(stored_ids) + 3


def test_a_streaming_message_is_saved_with_its_text_so_far(slack: LocalSlack, web: WebClient, tmp_path: Path) -> None:
    alice = slack.add_user("alice")
    ch = slack.add_channel("general", members=[alice])
    parent = slack.mention(ch, alice, "tell me")["event"]["ts"]
    ts = web.chat_startStream(channel=ch, thread_ts=parent, markdown_text="Once ")["ts"]
    web.chat_appendStream(channel=ch, ts=ts, markdown_text="upon")
    path = tmp_path / "workspace.sqlite"
    save(slack, path)

    with load(path) as restored:
        assert restored.workspace.streaming == set()
        message = restored.message(ch, ts)
        assert message is not None and message["text"] == "Once upon"
        client = WebClient(token=TOKEN, base_url=restored.api_url)
        with pytest.raises(SlackApiError) as err:
            client.chat_appendStream(channel=ch, ts=ts, markdown_text=" a time")
        assert err.value.response["error"] == "message_not_in_streaming_state"


def test_a_new_file_has_nothing_to_load(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "workspace.sqlite"
    with WorkspaceStore(path) as store:
        assert not store.load(fresh_slack().workspace)
    with WorkspaceStore(path) as store:  # reopening the (still empty) file is fine
        ws = fresh_slack().workspace
        assert not store.load(ws)
        assert list(ws.users) == ["UBOT"] and ws.channels == {}


def test_saving_again_replaces_the_snapshot(slack: LocalSlack, tmp_path: Path) -> None:
    ch = slack.add_channel("general")
    alice = slack.add_user("alice")
    path = tmp_path / "workspace.sqlite"
    with WorkspaceStore(path) as store:
        slack.user_message(ch, alice, "one")
        store.save(slack.workspace)
        slack.user_message(ch, alice, "two")
        store.save(slack.workspace)
    with load(path) as restored:
        assert [m["text"] for m in restored.messages(ch)] == ["one", "two"]
        assert list(restored.workspace.channels) == [ch]


def test_load_wants_a_fresh_workspace(slack: LocalSlack, tmp_path: Path) -> None:
    slack.add_channel("general")
    path = tmp_path / "workspace.sqlite"
    save(slack, path)
    busy = fresh_slack()
    busy.add_channel("other")
    with WorkspaceStore(path) as store, pytest.raises(RuntimeError, match="fresh Workspace"):
        store.load(busy.workspace)


# -- unusable files -------------------------------------------------------


def assert_unusable(path: Path) -> StoreError:
    with pytest.raises(StoreError) as info:
        WorkspaceStore(path)
    message = str(info.value)
    assert str(path) in message and "Move it away" in message
    assert isinstance(info.value, ValueError)
    return info.value


def test_a_file_that_is_not_sqlite_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "workspace.sqlite"
    path.write_bytes(b"this is not a database, just some notes\n" * 100)
    assert_unusable(path)


def test_an_unknown_schema_version_is_reported_with_its_path(slack: LocalSlack, tmp_path: Path) -> None:
    path = tmp_path / "workspace.sqlite"
    save(slack, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    assert "'99'" in str(assert_unusable(path))


def test_another_apps_database_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "ember.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE memories (id INTEGER PRIMARY KEY)")
    conn.close()
    assert "memories" in str(assert_unusable(path))


def test_damaged_rows_are_reported_with_the_path(slack: LocalSlack, tmp_path: Path) -> None:
    ch = slack.add_channel("general")
    slack.user_message(ch, slack.add_user("alice"), "hello")
    path = tmp_path / "workspace.sqlite"
    save(slack, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE messages SET body = '{not json'")
    conn.close()
    with WorkspaceStore(path) as store, pytest.raises(StoreError, match="damaged") as info:
        store.load(fresh_slack().workspace)
    assert str(path) in str(info.value)


# -- autosave -------------------------------------------------------------


def saved_texts(path: Path, channel: str) -> list[str]:
    """What a restart would show in `channel` right now, read through a separate connection."""
    restored = fresh_slack()
    with WorkspaceStore(path) as store:
        if not store.load(restored.workspace) or restored.workspace.channel(channel) is None:
            return []
    return [m["text"] for m in restored.messages(channel)]


def wait_until_saved(path: Path, channel: str, expected: list[str], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (texts := saved_texts(path, channel)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return texts


def test_autosave_saves_soon_after_a_change(tmp_path: Path) -> None:
    slack = fresh_slack()
    ch = slack.add_channel("general")
    alice = slack.add_user("alice")
    path = tmp_path / "workspace.sqlite"
    with WorkspaceStore(path) as store:
        autosave = Autosave(slack.workspace, store, interval=0.05)
        try:
            slack.user_message(ch, alice, "one")
            assert wait_until_saved(path, ch, ["one"]) == ["one"]
            slack.user_message(ch, alice, "two")
            assert wait_until_saved(path, ch, ["one", "two"]) == ["one", "two"]
        finally:
            autosave.stop()


def test_autosave_stop_saves_what_the_debounce_held_back(tmp_path: Path) -> None:
    slack = fresh_slack()
    ch = slack.add_channel("general")
    alice = slack.add_user("alice")
    path = tmp_path / "workspace.sqlite"
    with WorkspaceStore(path) as store:
        autosave = Autosave(slack.workspace, store, interval=3600)
        slack.user_message(ch, alice, "first")  # saved straight away: nothing was saved for an hour
        assert wait_until_saved(path, ch, ["first"]) == ["first"]
        slack.user_message(ch, alice, "second")  # held back by the one-hour interval
        autosave.stop()
    assert saved_texts(path, ch) == ["first", "second"]


def test_autosave_logs_failures_and_keeps_running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    slack = fresh_slack()
    ch = slack.add_channel("general")
    store = WorkspaceStore(tmp_path / "workspace.sqlite")
    store.close()  # every save now fails
    with caplog.at_level(logging.WARNING, logger="playground.store"):
        autosave = Autosave(slack.workspace, store, interval=0.01)
        slack.user_message(ch, slack.add_user("alice"), "lost")
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.02)
        assert caplog.records and "autosave" in caplog.records[0].getMessage()
        assert caplog.records[0].exc_info is not None
        slack.user_message(ch, "UBOT", "still trying")
        time.sleep(0.05)
        assert autosave._thread.is_alive()
        with pytest.raises(StoreError, match="could not save"):
            autosave.stop()
