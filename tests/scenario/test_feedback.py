"""Feedback on answers, end to end: a real Bolt app over HTTP, the local Slack stand-in, real SQLite.

Clicks, view_submission and reaction payloads come from the stand-in's builders (tests.support.feedback),
and the stand-in serves `views.open`, keeping each person's open modals.
Every wait is on something the bot does (an ephemeral, a Web API call), never on the clock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

import numpy as np
import pytest
from slack_bolt import App, BoltContext, BoltRequest
from slack_sdk import WebClient
from sqlalchemy import delete, select

from bot.runtime import Ember
from db import Database, Memory
from db.feedback import record_vote, votes_for
from db.repo import Conversation, record_turn
from db.schema import Turn, utcnow
from db.vector_index import VectorIndex
from handlers.qa.handler import QAHandler
from handlers.slack.feedback import (
    CORRECTION_BLOCK,
    EMPTY_CORRECTION,
    FEEDBACK_ACTION,
    GONE,
    SUGGEST_ACTION,
    SUGGEST_CALLBACK,
    THANKS_CORRECTION,
    THANKS_DOWN,
    THANKS_UP,
    VOTE_DOWN_ACTION,
    VOTE_UP_ACTION,
    SuggestTarget,
    fallback_feedback_blocks,
    feedback_blocks,
    on_feedback,
    register_feedback,
    suggest_modal,
)
from handlers.slack.services import CONTEXT_KEY, Services
from playground import LocalSlack, SlackClient, sign
from tests.conftest import SIGNING_SECRET, Bots
from tests.support.feedback import click, reaction_added, thanks, view_submission, votes
from tests.support.scenario import answered, turns, wait_for
from tests.support.scripted import ScriptedEngine

# --- Ember's side ------------------------------------------------------------------------------


def start(bots: Bots) -> Ember:
    """A running bot with the feedback listeners, whether or not handlers.slack.wiring wires them yet.

    Bolt runs the first listener that matches, so registering them a second time would be harmless.
    """
    bot = bots.start()
    if not any(getattr(listener, "ack_function", None) is on_feedback for listener in bot.bolt._listeners):
        register_feedback(bot.bolt)
    return bot


@dataclass(frozen=True)
class Answered:
    turn_id: int
    channel: str
    thread_ts: str
    answer_ts: str
    question_ts: str


def ask(bots: Bots, slack: LocalSlack, channel: str, user: str, question: str, *, fallback: bool = False) -> Answered:
    """Mention Ember, wait for its answer and its turn, and make sure the answer shows feedback controls."""
    assert bots.current is not None
    data_dir = bots.current.settings.data_dir
    before = len(turns(data_dir))
    envelope = slack.mention(channel, user, question)
    thread_ts = envelope["event"]["ts"]
    assert bots.client.send_event(envelope).status_code == 200
    [reply] = answered(slack, channel, thread_ts)
    # The turn is stored just after its answer is posted.
    [turn] = [t for t in turns(data_dir, at_least=before + 1) if t["answer_ts"] == reply["ts"]]
    _show_controls(slack, channel, reply, thread_ts, fallback=fallback)
    return Answered(turn["id"], channel, thread_ts, reply["ts"], thread_ts)


def _show_controls(slack: LocalSlack, channel: str, reply: dict[str, Any], question_ts: str, *, fallback: bool) -> None:
    """What handlers.slack.answering attaches once it is wired: put it on the answer where it is not there yet."""
    blocks = reply.get("blocks") or []
    if fallback:
        controls = fallback_feedback_blocks(question_ts)
    elif any(block.get("type") == "context_actions" for block in blocks):
        return
    else:
        controls = feedback_blocks(question_ts)
    text = [block for block in blocks if block.get("type") not in ("context_actions", "actions")]
    slack.workspace.edit(channel, reply["ts"], {"blocks": text + controls})


def corrections(bot: Ember) -> list[Memory]:
    with bot.db.session() as session:
        return list(session.scalars(select(Memory).where(Memory.kind == "correction").order_by(Memory.id)))


# --- scenarios ---------------------------------------------------------------------------------


def test_thumbs_down_and_a_correction_are_stored_against_the_turn_and_a_second_vote_replaces_the_first(
    bots: Bots, slack: LocalSlack
) -> None:
    bot = start(bots)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    other = ask(bots, slack, channel, alice, "Where is the style guide?")
    answer = ask(bots, slack, channel, alice, "What is the VPN host?")

    # Thumbs down on Slack's feedback_buttons.
    response = bots.client.send_interaction(
        click(slack, channel, alice, answer.answer_ts, FEEDBACK_ACTION, positive=False)
    )
    assert response.status_code == 200
    [down] = thanks(slack, alice, 1)
    assert (down["text"], down["channel"], down["thread_ts"]) == (THANKS_DOWN, channel, answer.thread_ts)
    assert votes(bot, answer.turn_id) == [(alice, -1, "button", None)]

    # "Suggest a better answer" opens the modal, which knows which answer it is about.
    suggest = click(slack, channel, alice, answer.answer_ts, SUGGEST_ACTION)
    assert bots.client.send_interaction(suggest).status_code == 200
    [opened] = slack.wait_for("views.open")
    assert opened.args["trigger_id"] == suggest["trigger_id"]
    metadata = json.loads(opened.args["view"]["private_metadata"])
    assert metadata == {"channel": channel, "answer_ts": answer.answer_ts, "thread_ts": answer.thread_ts}
    [view] = slack.workspace.views[alice]
    assert view["callback_id"] == SUGGEST_CALLBACK

    # An empty answer keeps the modal open, naming the field.
    blank = bots.client.send_interaction(view_submission(slack, alice, view, "  \n "))
    assert blank.status_code == 200
    assert blank.json() == {"response_action": "errors", "errors": {CORRECTION_BLOCK: EMPTY_CORRECTION}}

    better = "The VPN host is vpn.acme.internal; log in with password=hunter2hunter2"
    submitted = bots.client.send_interaction(view_submission(slack, alice, view, better))
    assert (submitted.status_code, submitted.text) == (200, "")  # an empty 200 closes the modal
    assert thanks(slack, alice, 2)[-1]["text"] == THANKS_CORRECTION
    redacted = "The VPN host is vpn.acme.internal; log in with password=[redacted]"
    assert votes(bot, answer.turn_id) == [(alice, -1, "modal", redacted)]
    [memory] = corrections(bot)
    assert (memory.turn_id, memory.user_id, memory.text) == (answer.turn_id, alice, redacted)
    assert (memory.question, memory.workspace_id, memory.channel_id, memory.channel_type) == (
        "What is the VPN host?",
        "T0001",
        channel,
        "channel",
    )
    assert (memory.thread_ts, memory.source_ts) == (answer.thread_ts, answer.answer_ts)

    # A second vote by the same person replaces the first; the correction stays.
    assert (
        bots.client.send_interaction(click(slack, channel, alice, answer.answer_ts, FEEDBACK_ACTION)).status_code == 200
    )
    assert thanks(slack, alice, 3)[-1]["text"] == THANKS_UP
    assert votes(bot, answer.turn_id) == [(alice, 1, "button", redacted)]
    assert [m.text for m in corrections(bot)] == [redacted]

    # A newer correction replaces the remembered one too.
    bots.client.send_interaction(view_submission(slack, alice, view, "vpn2.acme.internal since May"))
    thanks(slack, alice, 4)
    assert votes(bot, answer.turn_id) == [(alice, -1, "modal", "vpn2.acme.internal since May")]
    assert [(m.turn_id, m.text) for m in corrections(bot)] == [(answer.turn_id, "vpn2.acme.internal since May")]
    assert votes(bot, other.turn_id) == [], "feedback went to the answer it was given on"


def test_thumbs_reactions_on_embers_answer_count_and_other_reactions_do_not(bots: Bots, slack: LocalSlack) -> None:
    bot = start(bots)
    channel = slack.add_channel("general")
    alice, bob, carol, dave = (slack.add_user(name) for name in ("alice", "bob", "carol", "dave"))
    answer = ask(bots, slack, channel, alice, "How do I file expenses?")

    bots.client.send_event(reaction_added(slack, bob, channel, answer.answer_ts, "+1"))
    [bob_thanks] = thanks(slack, bob, 1)
    assert (bob_thanks["text"], bob_thanks["thread_ts"]) == (THANKS_UP, answer.thread_ts)
    assert votes(bot, answer.turn_id) == [(bob, 1, "reaction", None)]

    # Not feedback: another emoji on the answer, a thumbs up on someone else's message.
    bots.client.send_event(reaction_added(slack, carol, channel, answer.answer_ts, "tada"))
    bots.client.send_event(reaction_added(slack, carol, channel, answer.question_ts, "+1"))
    # Skin tones still count. With one listener worker, once this is thanked the two above were handled.
    bots.client.send_event(reaction_added(slack, dave, channel, answer.answer_ts, "thumbsdown::skin-tone-3"))
    thanks(slack, dave, 1)
    assert votes(bot, answer.turn_id) == [(bob, 1, "reaction", None), (dave, -1, "reaction", None)]
    assert not [e for e in slack.ephemerals() if e["user"] == carol]

    # Bob changes his mind with the other thumb: still one vote of his.
    bots.client.send_event(reaction_added(slack, bob, channel, answer.answer_ts, "-1"))
    thanks(slack, bob, 2)
    assert votes(bot, answer.turn_id) == [(bob, -1, "reaction", None), (dave, -1, "reaction", None)]

    # Taking a reaction off takes its vote back; taking off one that no longer stands for the vote does not.
    bots.client.send_event(reaction_added(slack, bob, channel, answer.answer_ts, "+1", "reaction_removed"))
    bots.client.send_event(reaction_added(slack, dave, channel, answer.answer_ts, "-1", "reaction_removed"))
    wait_for(lambda: votes(bot, answer.turn_id) == [(bob, -1, "reaction", None)])
    bots.client.send_event(reaction_added(slack, bob, channel, answer.answer_ts, "-1", "reaction_removed"))
    wait_for(lambda: votes(bot, answer.turn_id) == [])
    assert len([e for e in slack.ephemerals() if e["user"] in (bob, dave)]) == 3, "removing is quiet"


def test_plain_buttons_vote_and_a_click_on_an_answer_without_a_turn_is_told_politely(
    bots: Bots, slack: LocalSlack
) -> None:
    bot = start(bots)
    channel, alice, bob = slack.add_channel("general"), slack.add_user("alice"), slack.add_user("bob")
    answer = ask(bots, slack, channel, alice, "Who runs the on-call rota?", fallback=True)

    bots.client.send_interaction(click(slack, channel, bob, answer.answer_ts, VOTE_UP_ACTION))
    assert thanks(slack, bob, 1)[-1]["text"] == THANKS_UP
    bots.client.send_interaction(click(slack, channel, bob, answer.answer_ts, VOTE_DOWN_ACTION))
    assert thanks(slack, bob, 2)[-1]["text"] == THANKS_DOWN
    assert votes(bot, answer.turn_id) == [(bob, -1, "button", None)]

    # The turn is gone (someone asked Ember to forget them) while the answer still shows its buttons.
    with bot.db.session() as session:
        session.execute(delete(Turn).where(Turn.id == answer.turn_id))
    stale = click(slack, channel, bob, answer.answer_ts, VOTE_UP_ACTION)
    assert bots.client.send_interaction(stale).status_code == 200
    gone = thanks(slack, bob, 3)[-1]
    assert (gone["text"], gone["channel"], gone["thread_ts"]) == (GONE, channel, answer.thread_ts)
    bots.client.send_interaction(click(slack, channel, bob, answer.answer_ts, SUGGEST_ACTION))
    assert thanks(slack, bob, 4)[-1]["text"] == GONE
    assert slack.workspace.views == {} and votes(bot, answer.turn_id) == []


# --- blocks and storage on their own -----------------------------------------------------------


def test_feedback_blocks_are_shaped_as_slack_requires() -> None:
    context_actions, actions = feedback_blocks("1700000000.000100")
    assert context_actions["type"] == "context_actions"
    # context_actions holds only feedback_buttons and icon_button elements.
    [buttons] = context_actions["elements"]
    assert (buttons["type"], buttons["action_id"]) == ("feedback_buttons", FEEDBACK_ACTION)
    assert buttons["positive_button"]["value"] != buttons["negative_button"]["value"]
    assert [(e["type"], e["action_id"]) for e in actions["elements"]] == [("button", SUGGEST_ACTION)]
    [fallback] = fallback_feedback_blocks("1700000000.000100")
    assert fallback["type"] == "actions"
    assert [e["action_id"] for e in fallback["elements"]] == [VOTE_UP_ACTION, VOTE_DOWN_ACTION, SUGGEST_ACTION]
    modal = suggest_modal(SuggestTarget("C1", "1.2", None), question="q" * 5000)
    assert len(modal["title"]["text"]) <= 24 and len(modal["blocks"][0]["text"]["text"]) <= 3000
    assert SuggestTarget.from_metadata(modal["private_metadata"]) == SuggestTarget("C1", "1.2", None)
    assert SuggestTarget.from_metadata("not json") is None


@pytest.fixture()
def database(db: Database) -> Database:
    """The shared `db` fixture: these run on SQLite and on PostgreSQL."""
    return db


PRIVATE_THREAD = Conversation("T1", "G1", "group", "100.1")


def _stored_turn(database: Database, where: Conversation = PRIVATE_THREAD, user_id: str = "U1") -> int:
    """A turn asked at 100.1 and answered at 100.2, in `where`."""
    with database.session() as session:
        turn: Turn = record_turn(
            session,
            conversation=where,
            user_id=user_id,
            source="mention",
            question="What is the VPN host?",
            question_ts="100.1",
            answer="vpn.example.com",
            answer_ts="100.2",
            model_version="v1",
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=5,
            asked_at=utcnow(),
        )
        return turn.id


def test_one_vote_per_person_per_turn_the_latest_wins(database: Database) -> None:
    turn_id = _stored_turn(database)
    with database.session() as session:
        record_vote(session, turn_id=turn_id, user_id="U2", value=-1, source="modal", correction="vpn.acme.internal")
        record_vote(session, turn_id=turn_id, user_id="U3", value=1, source="reaction")
    with database.session() as session:
        record_vote(session, turn_id=turn_id, user_id="U2", value=1, source="button")
    with database.session() as session:
        stored = [(v.user_id, v.value, v.source, v.correction) for v in votes_for(session, turn_id=turn_id)]
        with pytest.raises(ValueError):
            record_vote(session, turn_id=turn_id, user_id="U2", value=0, source="button")
        with pytest.raises(ValueError):
            record_vote(session, turn_id=turn_id, user_id="U2", value=1, source="email")
    assert stored == [("U2", 1, "button", "vpn.acme.internal"), ("U3", 1, "reaction", None)]


def test_concurrent_votes_by_one_person_leave_one_vote(database: Database) -> None:
    """Two clicks at once (or two replicas taking them): one vote row, holding one of the two values."""
    turn_id = _stored_turn(database)
    barrier = threading.Barrier(4)

    def vote(value: int) -> None:
        barrier.wait()
        with database.session() as session:
            record_vote(session, turn_id=turn_id, user_id="U2", value=value, source="button")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(vote, [1, -1, 1, -1]))
    with database.session() as session:
        votes = [(v.user_id, v.value) for v in votes_for(session, turn_id=turn_id)]
    assert votes in ([("U2", 1)], [("U2", -1)])


class _Embedder:
    """Deterministic unit vectors: enough for db.memory to store and index them."""

    name = "test-embedder"

    def embed(self, texts: Any) -> np.ndarray:
        rng = np.random.default_rng(len(texts[0]))
        vectors = rng.standard_normal((len(texts), 8)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_persons_later_correction_replaces_their_earlier_one(database: Database) -> None:
    turn_id = _stored_turn(database)
    with database.session() as session:
        index = VectorIndex.build(session, model=_Embedder.name)
    for text in ("vpn.acme.internal", "vpn2.acme.internal"):
        with database.session() as session:
            record_vote(
                session,
                turn_id=turn_id,
                user_id="U2",
                value=-1,
                source="modal",
                correction=text,
                embedder=_Embedder(),
                index=index,
            )
    with database.session() as session:
        [memory] = session.scalars(select(Memory)).all()
    assert (memory.text, memory.question, memory.kind, memory.turn_id) == (
        "vpn2.acme.internal",
        "What is the VPN host?",
        "correction",
        turn_id,
    )
    assert (memory.channel_type, memory.thread_ts, memory.embedding_model) == ("group", "100.1", _Embedder.name)
    assert memory.id in index and len(index) == 1, "the earlier correction's vector went with it"


def test_a_suggested_answer_is_stored_as_a_vote_and_a_correction_without_an_embedder(
    slack: LocalSlack, database: Database
) -> None:
    """The wiring, on a Bolt app of its own: no answer needed, only a stored turn. Without day-time
    recall the correction's memory waits for its vector (Recall.open embeds it at the next start)."""
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    turn_id = _stored_turn(database, Conversation("T0001", channel, "channel", "100.1"), alice)
    services = Services(db=database, qa=cast(QAHandler, None))
    app = App(client=WebClient(token=slack.bot_token, base_url=slack.api_url), signing_secret=SIGNING_SECRET)

    def inject(context: BoltContext, next: Callable[[], None]) -> None:
        context[CONTEXT_KEY] = services
        next()

    app.use(inject)
    register_feedback(app)
    view = suggest_modal(SuggestTarget(channel, "100.2", "100.1"), question="What is the VPN host?")
    body = urlencode({"payload": json.dumps(view_submission(slack, alice, view, "vpn.acme.internal"))})
    now = str(int(time.time()))
    headers: dict[str, str | Sequence[str]] = {
        "content-type": ["application/x-www-form-urlencoded"],
        "x-slack-request-timestamp": [now],
        "x-slack-signature": [sign(SIGNING_SECRET, now, body.encode())],
    }
    response = app.dispatch(BoltRequest(body=body, headers=headers))
    assert response.status == 200
    assert thanks(slack, alice, 1)[-1]["text"] == THANKS_CORRECTION
    with database.session() as session:
        [memory] = session.scalars(select(Memory)).all()
        assert (memory.turn_id, memory.text, memory.user_id, memory.kind) == (
            turn_id,
            "vpn.acme.internal",
            alice,
            "correction",
        )
        assert memory.embedding is None and memory.embedding_model is None
        assert [v.correction for v in votes_for(session, turn_id=turn_id)] == ["vpn.acme.internal"]


HELD_REPLY = "This answer takes its time."


class HeldEngine(ScriptedEngine):
    """Answers from the script; the reply HELD_REPLY is generated only once the test lets it go."""

    def __init__(self, tokenizer: Any, replies: Sequence[str]) -> None:
        super().__init__(tokenizer, replies)
        self.holding = threading.Event()
        self.release = threading.Event()

    def generate(self, messages: Any, **options: Any) -> Any:
        completion = super().generate(messages, **options)
        if completion.text == HELD_REPLY:
            self.holding.set()
            assert self.release.wait(60), "the test never let the held answer go"
        return completion


def test_a_click_is_acked_while_every_answer_worker_is_busy(
    bot_settings: Any, slack: LocalSlack, tokenizer: Any
) -> None:
    """Slack wants a click acked within 3 s; an answer takes minutes. With one answer worker busy
    generating, a thumbs-up on an earlier answer is still acked and thanked."""
    engine = HeldEngine(tokenizer, ["The VPN host is vpn-1.", HELD_REPLY])
    bot = Ember.build(bot_settings.model_copy(update={"workers": 1}), engine=engine)
    bot.start()
    try:
        client = SlackClient(f"{bot.url}/slack/events", SIGNING_SECRET)
        channel, alice = slack.add_channel("general"), slack.add_user("alice")
        first = slack.mention(channel, alice, "What is the VPN host?")
        assert client.send_event(first).status_code == 200
        [reply] = answered(slack, channel, first["event"]["ts"])
        assert client.send_event(slack.mention(channel, alice, "Where is the style guide?")).status_code == 200
        assert engine.holding.wait(30), "the second answer never started"

        response = client.send_interaction(click(slack, channel, alice, reply["ts"], FEEDBACK_ACTION))

        assert response.status_code == 200
        [up] = thanks(slack, alice, 1)
        assert up["text"] == THANKS_UP
    finally:
        engine.release.set()
        bot.stop()
