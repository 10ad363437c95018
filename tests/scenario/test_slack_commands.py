"""The /ember slash command, end to end over HTTP."""

from __future__ import annotations

from bot.settings import Settings
from handlers.slack.feedback import FEEDBACK_ACTION, THANKS_DOWN
from playground import LocalSlack
from tests.conftest import Bots
from tests.scenario.test_slack_mentions import turns
from tests.support.feedback import click, thanks, votes


def test_ember_ask_acks_at_once_then_answers_in_the_channel(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    response = bots.client.send_form(slack.command_payload(channel, alice, "ask   How do I reset my password?"))
    assert response.status_code == 200
    assert "Thinking about: _How do I reset my password?_" in response.json()["text"]
    [post] = slack.wait_for("chat.postMessage", lambda call: call.args.get("channel") == channel)
    assert post.args["text"].startswith(f"<@{alice}> asked: _How do I reset my password?_")
    [turn] = turns(bot_settings, at_least=1)
    assert (turn["source"], turn["question"], turn["user_id"]) == ("command", "How do I reset my password?", alice)
    assert turn["answer_ts"] == turn["thread_ts"] == post.response["ts"]


def test_ember_ask_falls_back_to_the_response_url_where_ember_cannot_post(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    slack.fail_next("chat.postMessage", error="not_in_channel", status=200, retry_after=None)
    assert bots.client.send_form(slack.command_payload(channel, alice, "ask what is Ember?")).status_code == 200
    [reply] = slack.wait_for("response_url")
    assert reply.args["response_type"] == "in_channel"
    assert "asked: _what is Ember?_" in reply.args["text"]
    [turn] = turns(bot_settings, at_least=1)
    assert turn["answer_ts"] is None


def test_ember_help_lists_the_commands_and_unknown_ones_get_the_usage(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    for text in ("help", ""):
        shown = bots.client.send_form(slack.command_payload(channel, alice, text)).json()["text"]
        assert "/ember ask <question>" in shown and "/ember help" in shown
    unknown = bots.client.send_form(slack.command_payload(channel, alice, "frobnicate now")).json()["text"]
    assert unknown.startswith("I don't know `/ember frobnicate`.")
    assert "/ember ask <question>" in unknown
    empty_ask = bots.client.send_form(slack.command_payload(channel, alice, "ask")).json()["text"]
    assert empty_ask.startswith("Ask what?")
    assert slack.calls_to("chat.postMessage") == []


def test_a_command_with_a_bad_signature_gets_401(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    response = bots.client.send_form(slack.command_payload(channel, alice, "ask hi"), bad_signature=True)
    assert response.status_code == 401


def test_ember_status_shows_the_model_and_the_last_training_run(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    shown = bots.client.send_form(slack.command_payload(channel, alice, "status")).json()["text"]
    assert "*Model:* `tiny-llama`" in shown
    assert "*Last training run:* none yet" in shown


def test_ember_ask_streams_cites_its_memories_and_carries_buttons_whose_vote_lands_on_the_turn(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bot = bots.start(stream_interval=0.0, max_new_tokens=48)
    channel, alice, bob = slack.add_channel("general"), slack.add_user("alice"), slack.add_user("bob")
    pinned = bots.client.send_form(slack.command_payload(channel, alice, "remember The VPN host is vpn.acme.internal"))
    assert pinned.json()["text"].startswith("Pinned for this channel")

    assert bots.client.send_form(slack.command_payload(channel, bob, "ask What is the VPN host?")).status_code == 200
    [turn] = turns(bot_settings, at_least=1)
    [post] = slack.calls_to("chat.postMessage")
    updates = [c for c in slack.calls_to("chat.update") if c.args["ts"] == post.response["ts"]]
    assert len(updates) >= 2, "the answer grew in the channel while it was generated"
    assert post.args["text"].startswith(f"<@{bob}> asked: _What is the VPN host?_")
    answer = slack.message(channel, post.response["ts"])
    assert answer is not None and answer["text"].endswith("_Drawn on: 1: fact_"), "it cites the pinned fact"
    assert turn["answer_ts"] == post.response["ts"]

    payload = click(slack, channel, alice, answer["ts"], FEEDBACK_ACTION, positive=False)
    assert bots.client.send_interaction(payload).status_code == 200
    assert thanks(slack, alice, 1)[-1]["text"] == THANKS_DOWN
    assert votes(bot, turn["id"]) == [(alice, -1, "button", None)]
