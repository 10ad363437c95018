"""A mention's answer streams into Slack as it is generated: natively, or as a post plus throttled updates."""

from __future__ import annotations

from bot.settings import Settings
from db.repo import Conversation
from handlers.qa.types import Question
from handlers.slack.mrkdwn import to_mrkdwn
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.scenario import answered, turns

QUESTION = "Explain our release process in detail"


def generated(bots: Bots, channel: str, user: str) -> str:
    """What the model generates for this question asked afresh: the text Slack must end up showing."""
    bot = bots.current
    assert bot is not None
    fresh = Question(Conversation("T0001", channel, "channel", "elsewhere"), user, QUESTION, "mention")
    messages = bot.services.qa.build_messages(fresh)
    return bot.engine.generate(messages, max_new_tokens=bot.settings.max_new_tokens).text


def test_an_answer_streams_natively_start_appends_stop(bots: Bots, slack: LocalSlack, bot_settings: Settings) -> None:
    bots.start(stream_interval=0.0, max_new_tokens=48)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, QUESTION)
    bots.client.send_event(envelope)
    [reply] = answered(slack, channel, envelope["event"]["ts"])

    [start] = slack.calls_to("chat.startStream")
    appends = slack.calls_to("chat.appendStream")
    [stop] = slack.calls_to("chat.stopStream")
    assert start.args["thread_ts"] == envelope["event"]["ts"]
    assert start.args["recipient_user_id"] == alice and start.args["recipient_team_id"] == "T0001"
    assert len(appends) >= 2, "the text arrived in several pieces while it was generated"
    assert start.at < appends[0].at <= appends[-1].at < stop.at
    streamed = start.args.get("markdown_text", "") + "".join(a.args.get("markdown_text", "") for a in appends)
    streamed += stop.args.get("markdown_text", "")
    [turn] = turns(bot_settings.data_dir, at_least=1)
    assert streamed.strip() == reply["text"].strip() == turn["answer"] == generated(bots, channel, alice)
    assert not slack.calls_to("chat.postMessage")


def test_without_native_streaming_an_answer_is_posted_then_updated(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start(stream_interval=0.0, max_new_tokens=48)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    slack.fail_next("chat.startStream", error="unknown_method", status=200, retry_after=None, times=5)
    envelope = slack.mention(channel, alice, QUESTION)
    bots.client.send_event(envelope)
    [turn] = turns(bot_settings.data_dir, at_least=1)

    [post] = slack.calls_to("chat.postMessage")
    updates = slack.calls_to("chat.update")
    assert post.args["thread_ts"] == envelope["event"]["ts"]
    assert len(updates) >= 2, "the message grew while the answer was generated"
    [reply] = answered(slack, channel, envelope["event"]["ts"])
    assert reply["ts"] == turn["answer_ts"]
    assert updates[-1].args["text"] == reply["text"] == to_mrkdwn(generated(bots, channel, alice))

    # The workspace is remembered: the next answer goes straight to post-and-update.
    second = slack.mention(channel, alice, "and again")
    bots.client.send_event(second)
    turns(bot_settings.data_dir, at_least=2)
    assert len(slack.calls_to("chat.startStream")) == 1
