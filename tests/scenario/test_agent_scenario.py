"""The agent through Slack: with a tool-capable chat template, a mention's answer may use tools; the
calls are stored with the turn, and a tool never reads a conversation the asker cannot see.

The model's choices are the one thing scripted here (tests/support/scripted.py's ScriptedEngine renders
every request with Qwen2.5's real template); Bolt, HTTP, SQLite and the Slack stand-in are real.
"""

from __future__ import annotations

import copy
import json
import sqlite3

from transformers import PreTrainedTokenizerBase

from bot.runtime import Ember
from bot.settings import Settings
from playground import LocalSlack, SlackClient
from tests.conftest import SIGNING_SECRET
from tests.support.chat_templates import QWEN2_5_INSTRUCT
from tests.support.scenario import answered, turns
from tests.support.scripted import ScriptedEngine, call


def test_a_mention_answered_with_tools_stores_its_calls_and_never_reads_private_channels(
    bot_settings: Settings, slack: LocalSlack, tokenizer: PreTrainedTokenizerBase
) -> None:
    qwen = copy.deepcopy(tokenizer)
    qwen.chat_template = QWEN2_5_INSTRUCT
    general, secret = slack.add_channel("general"), slack.add_channel("board", kind="private")
    alice, bob = slack.add_user("alice"), slack.add_user("bob")
    slack.user_message(secret, bob, "The board approved the Initech deal")
    slack.user_message(general, bob, "Launch moved to Thursday")
    engine = ScriptedEngine(
        qwen,
        [
            call("read_channel", channel=secret),
            call("read_channel", channel=general, limit=5),
            "The launch moved to Thursday.",
        ],
    )
    bot = Ember.build(bot_settings, engine=engine)  # type: ignore[arg-type]
    bot.start()
    try:
        envelope = slack.mention(general, alice, "When is the launch?")
        SlackClient(f"{bot.url}/slack/events", SIGNING_SECRET).send_event(envelope)
        [reply] = answered(slack, general, envelope["event"]["ts"])
        assert reply["text"].startswith("The launch moved to Thursday.")
        [turn] = turns(bot_settings.data_dir, at_least=1)
    finally:
        bot.stop()

    with sqlite3.connect(bot_settings.data_dir / "ember.db") as connection:
        calls = connection.execute(
            "SELECT step, name, arguments, result FROM tool_calls WHERE turn_id = ? ORDER BY step", (turn["id"],)
        ).fetchall()
    assert [(name, json.loads(arguments)["channel"]) for _, name, arguments, _ in calls] == [
        ("read_channel", secret),
        ("read_channel", general),
    ]
    assert "Initech" not in calls[0][3] and calls[0][3].startswith("error:")
    assert "Launch moved to Thursday" in calls[1][3]
    read = [c.args.get("channel") for c in slack.calls_to("conversations.history")]
    assert secret not in read and general in read
    # What the model was shown after its tools ran never held the private channel's words.
    assert len(engine.prompts) == 3 and all("Initech" not in p.prompt for p in engine.prompts)


def test_a_tool_using_answer_streams_into_the_thread_with_its_tool_step_as_the_status(
    bot_settings: Settings, slack: LocalSlack, tokenizer: PreTrainedTokenizerBase
) -> None:
    qwen = copy.deepcopy(tokenizer)
    qwen.chat_template = QWEN2_5_INSTRUCT
    general, alice = slack.add_channel("general"), slack.add_user("alice")
    slack.user_message(general, alice, "Launch moved to Thursday")
    answer = "The launch moved to Thursday, so the demo is on Friday after the review."
    engine = ScriptedEngine(qwen, [call("read_channel", channel=general), answer])
    bot = Ember.build(bot_settings.model_copy(update={"stream_interval": 0.0}), engine=engine)  # type: ignore[arg-type]
    bot.start()
    try:
        envelope = slack.mention(general, alice, "When is the launch?")
        SlackClient(f"{bot.url}/slack/events", SIGNING_SECRET).send_event(envelope)
        thread = envelope["event"]["ts"]
        [reply] = answered(slack, general, thread)
        [turn] = turns(bot_settings.data_dir, at_least=1)
    finally:
        bot.stop()

    [status] = slack.calls_to("assistant.threads.setStatus")
    assert (status.args["channel_id"], status.args["thread_ts"]) == (general, thread)
    assert status.args["status"] == "is reading the channel…"
    [start] = slack.calls_to("chat.startStream")
    appends = slack.calls_to("chat.appendStream")
    assert len(appends) >= 2, "the final answer arrived in several pieces"
    assert status.at < start.at, "the status showed while the tool ran, before any text"
    streamed = start.args["markdown_text"] + "".join(a.args.get("markdown_text", "") for a in appends)
    assert streamed.strip() == answer == turn["answer"]
    assert reply["text"].strip() == answer
    assert "<tool_call>" not in streamed
