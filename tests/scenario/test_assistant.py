"""Ember in Slack's assistant pane: suggested prompts drawn from what the team asks (never from a
conversation the person is not in), the first question as the thread's title, the answer streamed
with a status, and "Catch me up on #channel" for a channel both can read, refused for one they can't."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from transformers import PreTrainedTokenizerBase

from bot.runtime import Ember
from bot.settings import Settings
from db.assistant import find_thread
from handlers.slack.assistant import ASK_ABOUT_SHORTCUT, CATCH_UP_REFUSED, CATCH_UP_SENT, DEFAULT_PROMPTS
from handlers.slack.home import HOME_CATCH_UP
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.digests import CitingEngine
from tests.support.scenario import answered, replies, wait_for


def ask_in_channel(bots: Bots, slack: LocalSlack, channel: str, user: str, question: str) -> None:
    mention = slack.mention(channel, user, question)
    assert bots.client.send_event(mention).status_code == 200
    answered(slack, channel, mention["event"]["ts"])


@dataclass(frozen=True)
class Team:
    """Alice and Bob in #general; #launch-plans is private, with Bob alone."""

    alice: str
    bob: str
    general: str
    secret: str


def a_team(slack: LocalSlack, *, notes: int = 0) -> Team:
    """The team, with `notes` messages from Bob in the last hour of each channel."""
    alice, bob = slack.add_user("alice"), slack.add_user("bob")
    general = slack.add_channel("general", members=[alice, bob])
    secret = slack.add_channel("launch-plans", kind="private", members=[bob])
    now = time.time()
    for i in range(notes):
        slack.seed(general, bob, f"we decided to move the release to Friday, note {i}", at=now - 3600 + i * 60)
        slack.seed(secret, bob, f"the launch is on the 14th, note {i}", at=now - 3600 + i * 60)
    return Team(alice, bob, general, secret)


def open_pane(bots: Bots, slack: LocalSlack, user: str, looking_at: str | None) -> tuple[str, str, list[dict]]:
    """`user` opens a new assistant thread; returns the DM, the thread and the prompts Ember suggested."""
    before = len(slack.calls_to("assistant.threads.setSuggestedPrompts"))
    envelope, dm, thread = slack.assistant_thread_started(user, looking_at)
    assert bots.client.send_event(envelope).status_code == 200
    [*_, call] = slack.wait_for("assistant.threads.setSuggestedPrompts", count=before + 1)
    assert (call.args["channel_id"], call.args["thread_ts"]) == (dm, thread)
    return dm, thread, list(call.args["prompts"])


def test_suggested_prompts_come_from_what_the_team_asks_but_never_from_a_conversation_one_is_not_in(
    bots: Bots, slack: LocalSlack
) -> None:
    bots.start()
    alice, bob = slack.add_user("alice"), slack.add_user("bob")
    general = slack.add_channel("general")
    secret = slack.add_channel("launch-plans", kind="private", members=[bob])
    ask_in_channel(bots, slack, general, bob, "How do I deploy the web app?")
    ask_in_channel(bots, slack, general, alice, "How do I deploy the web app?")
    ask_in_channel(bots, slack, general, bob, "Where is the style guide?")
    ask_in_channel(bots, slack, secret, bob, "When is the secret launch date?")
    ask_in_channel(bots, slack, secret, bob, "When is the secret launch date?")
    ask_in_channel(bots, slack, secret, bob, "When is the secret launch date?")

    # Alice, looking at #general: a catch-up, then the most asked first; bob's private talk is not there.
    _, _, prompts = open_pane(bots, slack, alice, general)
    messages = [p["message"] for p in prompts]
    assert messages[:3] == [f"Catch me up on <#{general}>", "How do I deploy the web app?", "Where is the style guide?"]
    assert prompts[0]["title"] == "Catch me up on #general"
    assert len(prompts) == 4 and messages[3] == DEFAULT_PROMPTS[0]["message"]
    assert not any("launch" in m for m in messages)

    # Looking at a private channel she is not in: no catch-up offered, nothing of it shown.
    _, _, prompts = open_pane(bots, slack, alice, secret)
    assert not any("Catch me up" in p["message"] or "launch" in p["message"] for p in prompts)

    # Bob is in it: its questions are not shared with him either (they are not public), but a catch-up is.
    _, _, prompts = open_pane(bots, slack, bob, secret)
    assert prompts[0]["message"] == f"Catch me up on <#{secret}>"
    assert not any("launch date" in p["message"] for p in prompts)


def test_the_first_question_titles_the_thread_and_the_answer_streams_with_a_status(
    bots: Bots, slack: LocalSlack
) -> None:
    bot = bots.start()
    alice = slack.add_user("alice")
    dm, thread, prompts = open_pane(bots, slack, alice, None)
    assert [p["message"] for p in prompts] == [p["message"] for p in DEFAULT_PROMPTS]
    with bot.db.session() as session:
        stored = find_thread(session, channel_id=dm, thread_ts=thread)
    assert stored is not None and stored.user_id == alice, "the thread's context is in Ember's database"

    first = slack.user_message(dm, alice, "What is the VPN host for the Berlin office?", thread_ts=thread)
    assert bots.client.send_event(first).status_code == 200
    wait_for(lambda: _answers(slack, dm, thread) == 1, timeout=120, what="the answer in the pane's thread")
    [title] = slack.calls_to("assistant.threads.setTitle")
    assert (title.args["thread_ts"], title.args["title"]) == (thread, "What is the VPN host for the Berlin office?")
    statuses = [c.args["status"] for c in slack.calls_to("assistant.threads.setStatus")]
    assert "is thinking…" in statuses
    assert slack.calls_to("chat.startStream") or slack.calls_to("chat.update"), "the answer streamed"

    second = slack.user_message(dm, alice, "And the one in Lisbon?", thread_ts=thread)
    bots.client.send_event(second)
    wait_for(lambda: _answers(slack, dm, thread) == 2, timeout=120, what="the second answer")
    assert len(slack.calls_to("assistant.threads.setTitle")) == 1, "only the first question titles the thread"


@pytest.fixture()
def digest_bot(bot_settings: Settings, tokenizer: PreTrainedTokenizerBase) -> Iterator[Bots]:
    """Ember with a model that takes digest notes the way an able one would (the tiny model's window
    holds no digest prompt)."""
    engine = CitingEngine(tokenizer, window=2048)

    class WithCitingModel(Bots):
        def start(self, **changes: object) -> Ember:
            self.current = Ember.build(self.settings.model_copy(update=changes), engine=engine)
            self.current.start()
            return self.current

    runner = WithCitingModel(bot_settings)
    yield runner
    runner.stop()


def test_catch_me_up_on_a_channel_one_can_read_sends_a_digest_and_on_one_one_cannot_refuses(
    digest_bot: Bots, slack: LocalSlack
) -> None:
    bots = digest_bot
    bots.start()
    team = a_team(slack, notes=6)
    alice, general, secret = team.alice, team.general, team.secret

    dm, thread, _ = open_pane(bots, slack, alice, general)
    ask = slack.user_message(dm, alice, f"Catch me up on <#{general}>", thread_ts=thread)
    assert bots.client.send_event(ask).status_code == 200
    wait_for(lambda: _said(slack, dm, thread, CATCH_UP_SENT.format(channel=general)), timeout=180, what="the catch-up")
    [digest] = [m for m in slack.messages(dm) if m.get("bot_id") and m["ts"] != thread and _top_level(m)]
    assert digest["text"].startswith("Catch-up of #general"), "the catch-up of #general was posted in the DM"

    before = len(slack.messages(dm))
    _, thread2, _ = open_pane(bots, slack, alice, secret)
    refused = slack.user_message(dm, alice, f"Catch me up on <#{secret}>", thread_ts=thread2)
    bots.client.send_event(refused)
    wait_for(lambda: _said(slack, dm, thread2, CATCH_UP_REFUSED), what="the refusal")
    everything = " ".join(str(m.get("text")) for m in slack.messages(dm)[before:])
    everything += " ".join(str(m.get("text")) for m in slack.messages(dm, thread2))
    assert "14th" not in everything and "launch is on" not in everything


def _answers(slack: LocalSlack, dm: str, thread: str) -> int:
    return len([m for m in replies(slack, dm, thread) if _has_buttons(m)])


def _has_buttons(message: dict[str, Any]) -> bool:
    return "feedback" in str(message.get("blocks"))


def _top_level(message: dict[str, Any]) -> bool:
    return message.get("thread_ts") in (None, message["ts"])


def _said(slack: LocalSlack, dm: str, thread: str, text: str) -> bool:
    return any(m.get("text") == text for m in slack.messages(dm, thread))


def test_ask_ember_about_this_starts_a_thread_in_the_dm_that_quotes_the_message(bots: Bots, slack: LocalSlack) -> None:
    bot = bots.start()
    alice, bob = slack.add_user("alice"), slack.add_user("bob")
    general = slack.add_channel("general", members=[alice, bob])
    said = slack.user_message(general, bob, "The deploy freeze starts Friday at 5pm.")["event"]
    shortcut = slack.message_shortcut(general, alice, said["ts"], ASK_ABOUT_SHORTCUT)
    assert bots.client.send_interaction(shortcut).status_code == 200
    [opened] = slack.wait_for("chat.postMessage", lambda c: "asked me about" in str(c.args.get("text")))
    dm, root = opened.args["channel"], opened.response["ts"]
    assert dm.startswith("D"), "in the person's DM with Ember"
    stored = slack.message(dm, root)
    assert stored is not None
    text = stored["text"]
    assert "> The deploy freeze starts Friday at 5pm." in text and f"<@{bob}>" in text and f"<#{general}>" in text
    assert "/archives/" in text, "it links the message"

    # Ember records the thread just after Slack takes the quote (it needs the quote's ts); a question
    # in those few milliseconds would go untitled (noted as a known gap), so this one waits for it.
    def recorded() -> bool:
        with bot.db.session() as session:
            return find_thread(session, channel_id=dm, thread_ts=root) is not None

    wait_for(recorded, timeout=30, what="the thread recorded")
    question = slack.user_message(dm, alice, "When does it start?", thread_ts=root)
    bots.client.send_event(question)
    wait_for(lambda: _answers(slack, dm, root) == 1, timeout=120, what="the answer in that thread")
    [title] = slack.calls_to("assistant.threads.setTitle")
    assert title.args["title"] == "When does it start?"
    read = [
        c for c in slack.calls_to("conversations.replies") if (c.args.get("channel"), c.args.get("ts")) == (dm, root)
    ]
    assert read, "the thread, quote included, was read as the question's context"


def test_in_the_agent_view_the_prompts_follow_the_channel_being_viewed_and_a_dm_can_ask_for_a_catch_up(
    bots: Bots, slack: LocalSlack
) -> None:
    bots.start()
    team = a_team(slack)
    alice, general, secret = team.alice, team.general, team.secret

    def prompts_after(envelope: dict[str, Any]) -> list[str]:
        before = len(slack.calls_to("assistant.threads.setSuggestedPrompts"))
        assert bots.client.send_event(envelope).status_code == 200
        [*_, call] = slack.wait_for("assistant.threads.setSuggestedPrompts", count=before + 1)
        assert "thread_ts" not in call.args, "the agent view's prompts sit at the top of the DM"
        return [p["message"] for p in call.args["prompts"]]

    # Looking at #general, she opens Ember's messages tab.
    assert prompts_after(slack.app_context_changed(alice, general))[0] == f"Catch me up on <#{general}>"
    assert prompts_after(slack.app_home_opened(alice, tab="messages"))[0] == f"Catch me up on <#{general}>"
    assert slack.home(alice) is None, "the messages tab publishes no home"
    # Then a private channel she is not in: no catch-up offered, and the reopened tab remembers.
    assert not any("Catch me up" in m for m in prompts_after(slack.app_context_changed(alice, secret)))
    assert not any("Catch me up" in m for m in prompts_after(slack.app_home_opened(alice, tab="messages")))

    # Asking for one anyway, at the top of the DM, is refused.
    envelope = slack.app_home_opened(alice, tab="messages")
    dm = envelope["event"]["channel"]
    refused = slack.user_message(dm, alice, f"Catch me up on <#{secret}>")
    bots.client.send_event(refused)
    wait_for(lambda: any(m.get("text") == CATCH_UP_REFUSED for m in slack.messages(dm)), what="the refusal")


def test_the_home_tab_offers_a_catch_up_of_the_channel_last_viewed_only_if_one_may_read_it(
    digest_bot: Bots, slack: LocalSlack
) -> None:
    bots = digest_bot
    bots.start()
    team = a_team(slack, notes=4)
    alice, general, secret = team.alice, team.general, team.secret

    def answered_calls() -> int:
        return len(slack.calls_to("views.publish")) + len(slack.calls_to("assistant.threads.setSuggestedPrompts"))

    def send(envelope: dict[str, Any]) -> None:
        before = answered_calls()
        assert bots.client.send_event(envelope).status_code == 200
        wait_for(lambda: answered_calls() > before, what="Ember's answer to the event")

    def home_after(*envelopes: dict[str, Any]) -> dict[str, Any]:
        for envelope in envelopes:
            send(envelope)
        home = slack.home(alice)
        assert home is not None
        return home

    home = home_after(slack.app_context_changed(alice, secret), slack.app_home_opened(alice))
    assert HOME_CATCH_UP not in str(home["blocks"]), "no catch-up of a channel she cannot read"
    home = home_after(slack.app_context_changed(alice, general), slack.app_home_opened(alice))
    assert "Catch me up on #general" in str(home["blocks"])

    published = len(slack.calls_to("views.publish"))
    assert bots.client.send_interaction(slack.home_action(alice, HOME_CATCH_UP)).status_code == 200
    slack.wait_for("views.publish", count=published + 1, timeout=120)
    assert CATCH_UP_SENT.format(channel=general) in str(slack.home(alice))
    dm = slack.app_home_opened(alice)["event"]["channel"]
    [digest] = [m for m in slack.messages(dm) if m.get("bot_id") and _top_level(m)]
    assert digest["text"].startswith("Catch-up of #general")
