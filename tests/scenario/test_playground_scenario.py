"""The playground runs the Ember that Slack talks to: signed requests into the same Bolt app and
handlers, and the answers go out through the Web API. (The page itself: tests/browser/.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from slack_bolt import BoltRequest, BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot.playground_run import PlaygroundEmber
from bot.settings import Settings, load_settings
from models import dataset
from tests.support.scenario import wait_for


@pytest.fixture()
def local(clean_env: None, tmp_path: Path, tiny_model_dir: Path) -> Iterator[PlaygroundEmber]:
    settings: Settings = load_settings(
        data_dir=tmp_path / "data",
        model=str(tiny_model_dir),
        port=0,
        max_new_tokens=8,
        stream_interval=0.1,
        scheduler=False,
        memory=False,
    )
    run = PlaygroundEmber(settings)
    run.start()
    try:
        yield run
    finally:
        run.stop()


def finished_replies(run: PlaygroundEmber, user: str, channel: str, ts: str) -> list[dict[str, Any]]:
    thread = run.playground.thread(user, channel, ts)
    return [m for m in thread.get("replies", []) if not m.get("streaming")]


def test_a_message_in_the_page_reaches_the_handlers_signed_and_is_answered_through_the_web_api(
    local: PlaygroundEmber,
) -> None:
    assert local.ember is not None
    playground = local.playground
    verifier = SignatureVerifier(local.signing_secret)
    received: list[tuple[str, bool]] = []

    def record(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        timestamp = req.headers.get("x-slack-request-timestamp", [""])[0]
        signature = req.headers.get("x-slack-signature", [""])[0]
        received.append(
            (
                str(req.body.get("type") or req.body.get("command")),
                verifier.is_valid(req.raw_body, timestamp, signature),
            )
        )
        return next()

    local.ember.bolt.use(record)
    people = {person["name"]: person["id"] for person in playground.people()}
    ana, ben = people["ana"], people["ben"]
    channels = {c["name"]: c["id"] for c in playground.directory(ana)["channels"]}
    general = channels["general"]

    sent = playground.send(ana, general, "@Ember what is the build host?")
    assert sent["ok"], sent
    wait_for(lambda: finished_replies(local, ana, general, sent["ts"]), what="Ember's answer in the thread")
    [answer] = finished_replies(local, ana, general, sent["ts"])
    assert answer["author"]["is_bot"] and answer["text"]
    assert ("event_callback", True) in received, received
    assert all(valid for _, valid in received), "every request Ember took was signed with the secret"

    # The answer went out through the Web API with the bot's token, as it would to Slack.
    answering = [c for c in playground.slack.calls if c.method in ("chat.startStream", "chat.postMessage")]
    assert answering and {c.token for c in answering} == {playground.slack.bot_token}

    def stored() -> list[tuple[str]]:  # the turn is written just after the stream stops
        with sqlite3.connect(local.ember.settings.data_dir / "ember.db") as connection:
            return connection.execute("SELECT question FROM turns").fetchall()

    wait_for(stored, what="the turn stored")
    with sqlite3.connect(local.ember.settings.data_dir / "ember.db") as connection:
        [(question,)] = connection.execute("SELECT question FROM turns").fetchall()
    assert question == "what is the build host?"

    # With day-time recall off (EMBER_MEMORY=false here), a thread correction is still kept for the night.
    assert playground.send(ana, general, "@Ember No, the build host is ci-7.acme.internal", thread_ts=sent["ts"])["ok"]
    wait_for(
        lambda: any("tonight's training" in m["text"] for m in finished_replies(local, ana, general, sent["ts"])),
        what="Ember taking the correction",
    )
    with local.ember.db.session() as session:
        corrections = [e for e in dataset.build(session, system_prompt="").examples if e.source == "correction"]
    assert [(e.question, e.completion) for e in corrections] == [
        ("what is the build host?", "The build host is ci-7.acme.internal")
    ]

    # A slash command takes the same path; its answer is the invoker's alone.
    assert playground.send(ana, general, "/ember help")["ok"]
    wait_for(lambda: playground.history(ana, general)["ephemerals"], what="the /ember help reply")
    assert "/ember" in playground.history(ana, general)["ephemerals"][-1]["text"]
    assert playground.history(ben, general)["ephemerals"] == []
    assert ("/ember", True) in received

    # Ember's endpoint is Slack's: a request without the signature is refused.
    refused = requests.post(playground.events_url, json={"type": "event_callback", "event": {}}, timeout=10)
    assert refused.status_code == 401
