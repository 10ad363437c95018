"""A real Bolt app over real HTTP, against the local Slack stand-in, with a real SQLite file and a tiny model."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.runtime import Ember
from bot.settings import Settings
from models.prompt import render
from playground import LocalSlack
from tests.conftest import Bots
from tests.support import scenario
from tests.support.scenario import answered, replies


def turns(settings: Settings, *, at_least: int = 0) -> list[dict[str, Any]]:
    return scenario.turns(settings.data_dir, at_least=at_least)


def barrier(bots: Bots, slack: LocalSlack, channel: str, user: str) -> None:
    """With one answer worker, once this mention is answered every earlier delivery was handled."""
    envelope = slack.mention(channel, user, "barrier question")
    assert bots.client.send_event(envelope).status_code == 200
    answered(slack, channel, envelope["event"]["ts"])


def test_a_mention_is_acked_before_the_model_runs_and_answered_in_a_new_thread(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bot = bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "What is the VPN host?")
    mention_ts = envelope["event"]["ts"]

    # Hold the model: the ack must not wait for generation.
    with bot.engine._lock:
        started = time.perf_counter()
        response = bots.client.send_event(envelope)
        ack_seconds = time.perf_counter() - started
        assert response.status_code == 200
        assert not replies(slack, channel), "nothing can be answered while the model is held"
    print(f"ack in {ack_seconds * 1000:.0f} ms while the model was busy")

    [reply] = answered(slack, channel, mention_ts)
    [turn] = turns(bot_settings, at_least=1)
    assert turn["question"] == "What is the VPN host?"
    assert turn["answer"] == reply["text"]
    assert turn["answer_ts"] == reply["ts"]
    assert (turn["workspace_id"], turn["channel_id"], turn["channel_type"]) == ("T0001", channel, "channel")
    assert (turn["thread_ts"], turn["question_ts"], turn["user_id"]) == (mention_ts, mention_ts, alice)
    assert turn["model_version"] == "tiny-llama" and turn["latency_ms"] >= 0 and turn["completion_tokens"] > 0


def test_bad_signatures_and_stale_timestamps_get_401_and_no_answer(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    forged = bots.client.send_event(slack.mention(channel, alice, "forged"), bad_signature=True)
    stale = bots.client.send_event(slack.mention(channel, alice, "replayed"), timestamp=int(time.time()) - 6 * 60)
    assert (forged.status_code, stale.status_code) == (401, 401)
    barrier(bots, slack, channel, alice)
    assert len(replies(slack, channel)) == 1, "only the barrier question was answered"


def test_a_redelivered_event_is_acked_and_not_answered_twice(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "How do I file expenses?")
    assert bots.client.send_event(envelope).status_code == 200
    answered(slack, channel, envelope["event"]["ts"])
    retry = bots.client.send_event(envelope, retry_num=1, retry_reason="http_timeout")
    assert retry.status_code == 200
    barrier(bots, slack, channel, alice)
    assert len(replies(slack, channel, envelope["event"]["ts"])) == 1


def test_a_redelivery_after_a_restart_is_not_answered_twice(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "Where is the style guide?")
    assert bots.client.send_event(envelope).status_code == 200
    answered(slack, channel, envelope["event"]["ts"])
    bots.restart()
    assert bots.client.send_event(envelope, retry_num=2, retry_reason="http_error").status_code == 200
    barrier(bots, slack, channel, alice)
    assert len(replies(slack, channel, envelope["event"]["ts"])) == 1
    assert len(turns(bot_settings, at_least=2)) == 2


def test_a_follow_up_after_a_restart_has_the_earlier_turns_in_context(
    bots: Bots, slack: LocalSlack, bot_settings: Settings, tokenizer: Any
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    first = slack.mention(channel, alice, "Our VPN host is vpn.acme.internal. What is it?")
    thread = first["event"]["ts"]
    bots.client.send_event(first)
    answered(slack, channel, thread)
    bot = bots.restart()

    # Slack's thread history is unavailable: the memory in SQLite alone must carry the conversation.
    slack.fail_next("conversations.replies", error="internal_error", status=500, retry_after=None)
    follow_up = slack.mention(channel, alice, "And what did I say the host was?", thread_ts=thread)
    bot_client = bots.client
    assert bot_client.send_event(follow_up).status_code == 200
    answered(slack, channel, thread, count=2)

    first_turn, second_turn = turns(bot_settings, at_least=2)
    expected_prompt = [
        {"role": "system", "content": bot.settings.system_prompt},
        {"role": "user", "content": first_turn["question"]},
        {"role": "assistant", "content": first_turn["answer"]},
        {"role": "user", "content": "And what did I say the host was?"},
    ]
    assert second_turn["thread_ts"] == thread
    assert second_turn["prompt_tokens"] == len(render(tokenizer, expected_prompt))


def test_other_peoples_replies_in_the_thread_are_context_too(
    bots: Bots, slack: LocalSlack, bot_settings: Settings, tokenizer: Any
) -> None:
    bots.start()
    channel, alice, bob = slack.add_channel("general"), slack.add_user("alice"), slack.add_user("bob")
    root = slack.user_message(channel, bob, "The deploy failed with error E42.")
    thread = root["event"]["ts"]
    mention = slack.mention(channel, alice, "what does that error mean?", thread_ts=thread)
    bots.client.send_event(mention)
    answered(slack, channel, thread)
    [turn] = turns(bot_settings, at_least=1)
    expected_prompt = [
        {"role": "system", "content": bots.settings.system_prompt},
        {"role": "user", "content": f"<@{bob}>: The deploy failed with error E42."},
        {"role": "user", "content": "what does that error mean?"},
    ]
    assert turn["prompt_tokens"] == len(render(tokenizer, expected_prompt))


def test_a_bare_mention_gets_a_short_help_reply(bots: Bots, slack: LocalSlack, bot_settings: Settings) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "")
    assert bots.client.send_event(envelope).status_code == 200
    [reply] = answered(slack, channel, envelope["event"]["ts"])
    assert "Ask me something" in reply["text"]
    assert turns(bot_settings) == []


def test_a_40000_character_question_is_cut_to_fit_and_the_reply_says_so(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    question = ("Please summarise this log line. " * 1300)[:39_999] + "?"
    envelope = slack.mention(channel, alice, question)
    assert bots.client.send_event(envelope).status_code == 200
    [reply] = answered(slack, channel, envelope["event"]["ts"])
    assert "Your message was 40,000 characters" in reply["text"]
    [turn] = turns(bot_settings, at_least=1)
    assert turn["prompt_tokens"] <= 512 - 16


def test_malformed_json_gets_400_and_an_unknown_path_404(bots: Bots) -> None:
    bot = bots.start()
    response = bots.client.send_raw(b'{"type": "event_callback", "event": {', "application/json")
    assert response.status_code == 400
    assert bots.client.send_raw(b"[1, 2]", "application/json").status_code == 400
    assert requests.get(f"{bot.url}/nowhere", timeout=10).status_code == 404


def test_dms_are_answered_in_a_titled_thread_and_bots_and_edits_are_ignored(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    alice = slack.add_user("alice")
    dm = slack.add_channel("dm-alice", kind="im", user=alice)
    envelope = slack.user_message(dm, alice, "hello, what can you do?")
    assert envelope["event"]["channel_type"] == "im"
    assert bots.client.send_event(envelope).status_code == 200
    [turn] = turns(bot_settings, at_least=1)
    [reply] = replies(slack, dm)
    question_ts = envelope["event"]["ts"]
    assert reply.get("thread_ts") == question_ts, "a top-level DM opens its own thread, as in the agent view"
    assert reply["ts"] == turn["answer_ts"]
    [title] = slack.calls_to("assistant.threads.setTitle")
    assert (title.args["thread_ts"], title.args["title"]) == (question_ts, "hello, what can you do?")
    assert "is thinking…" in [c.args["status"] for c in slack.calls_to("assistant.threads.setStatus")]

    ignored = [
        slack.bot_message(dm, "I am another bot"),
        slack.edited_message(dm, envelope["event"]["ts"], "hello, edited"),
        slack.user_message(slack.add_channel("random"), alice, "chatter without a mention"),
    ]
    for event in ignored:
        assert bots.client.send_event(event).status_code == 200
    channel = slack.add_channel("general")
    barrier(bots, slack, channel, alice)
    assert len(replies(slack, dm)) == 1
    assert [turn["channel_type"] for turn in turns(bot_settings, at_least=2)] == ["im", "channel"]


def test_ember_answers_its_data_dir_from_the_settings(bot_settings: Settings, bots: Bots) -> None:
    bot: Ember = bots.start()
    assert Path(bot.db.url.removeprefix("sqlite:///")) == (bot_settings.data_dir / "ember.db").resolve()


def test_starting_with_the_token_in_the_environment_logs_no_warning_about_it(
    bots: Bots, bot_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Bolt reads SLACK_BOT_TOKEN itself; it is the token Ember's client already has, not a problem.
    assert bot_settings.slack_bot_token is not None
    monkeypatch.setenv("SLACK_BOT_TOKEN", bot_settings.slack_bot_token.get_secret_value())
    with caplog.at_level(logging.WARNING):
        bots.start()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING], "a clean start"
