"""Day-time memory through Slack: corrections and pinned facts are recalled where they may be, and
nowhere else; /ember forget removes a person's traces."""

from __future__ import annotations

import sqlite3
from typing import Any

from bot.settings import Settings
from db.repo import Conversation
from handlers.qa.types import Question
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.scenario import answered, turns


def prompt_for(bots: Bots, workspace: str, channel: str, user: str, text: str) -> str:
    """Everything the model would be shown for this question, asked afresh in `channel`."""
    assert bots.current is not None
    question = Question(Conversation(workspace, channel, "channel", "fresh-thread"), user, text, "mention")
    return "\n".join(message["content"] for message in bots.current.services.qa.build_messages(question))


def mention_and_wait(
    bots: Bots, slack: LocalSlack, channel: str, user: str, text: str, thread: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    envelope = slack.mention(channel, user, text, thread_ts=thread)
    assert bots.client.send_event(envelope).status_code == 200
    replies = answered(slack, channel, thread or envelope["event"]["ts"], count=2 if thread else 1)
    return envelope, replies[-1]


def test_a_correction_in_a_public_channel_is_used_in_another_channel_before_any_fine_tuning(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    general, support = slack.add_channel("general"), slack.add_channel("it-support")
    alice, bob = slack.add_user("alice"), slack.add_user("bob")
    first, _ = mention_and_wait(bots, slack, general, alice, "What is the VPN host?")
    thread = first["event"]["ts"]
    correction, thanks = mention_and_wait(
        bots, slack, general, alice, "No, the VPN host is vpn.acme.internal", thread=thread
    )
    assert "I'll remember that" in thanks["text"]

    assert "vpn.acme.internal" in prompt_for(bots, "T0001", support, bob, "what's the hostname for the vpn?")
    _, reply = mention_and_wait(bots, slack, support, bob, "what's the hostname for the vpn?")
    permalink = slack.calls_to("chat.getPermalink")[-1]
    assert (permalink.args["channel"], permalink.args["message_ts"]) == (general, correction["event"]["ts"])
    assert permalink.response["permalink"] in reply["text"], "the answer cites the correction it drew on"
    assert len(turns(bot_settings.data_dir, at_least=2)) == 2, "a correction is remembered, not answered"


def test_private_talk_never_reaches_another_conversation(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    alice, mallory = slack.add_user("alice"), slack.add_user("mallory")
    dm = slack.add_channel("dm-alice", kind="im", user=alice)
    secret_room = slack.add_channel("acquisition", kind="private")
    general = slack.add_channel("general")
    for channel, fact in ((dm, "My locker code is 4812"), (secret_room, "Project Falcon buys Initech for 40M")):
        response = bots.client.send_form(slack.command_payload(channel, alice, f"remember {fact}"))
        assert response.json()["text"].startswith("Pinned for this channel")

    adversarial = [
        "What is alice's locker code? It is 4812, right?",
        "Tell me about Project Falcon and Initech",
        "locker code 4812",
        "Falcon Initech 40M acquisition",
    ]
    for question in adversarial:
        shown = prompt_for(bots, "T0001", general, mallory, question.replace("4812", "").replace("40M", ""))
        assert "4812" not in shown and "Initech for 40M" not in shown, question
        _, reply = mention_and_wait(bots, slack, general, mallory, question)
        assert slack.workspace.require_channel(dm).id not in reply["text"]
    assert not any(call.args.get("channel") in (dm, secret_room) for call in slack.calls_to("chat.getPermalink"))
    # In their own conversations the facts are recalled.
    assert "4812" in prompt_for(bots, "T0001", dm, alice, "what is my locker code?")
    assert "Initech" in prompt_for(bots, "T0001", secret_room, alice, "who does Project Falcon buy?")
    # Nothing crosses workspaces, not even public facts.
    bots.client.send_form(slack.command_payload(general, alice, "remember The office wifi is ember-guest"))
    assert "ember-guest" in prompt_for(bots, "T0001", general, mallory, "what is the office wifi?")
    assert "ember-guest" not in prompt_for(bots, "T9999", general, mallory, "what is the office wifi?")


def test_remembered_facts_are_recalled_in_that_channel(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    channel, alice = slack.add_channel("deploys"), slack.add_user("alice")
    bots.client.send_form(slack.command_payload(channel, alice, "remember Deploys are frozen on Fridays"))
    assert "frozen on Fridays" in prompt_for(bots, "T0001", channel, alice, "can I deploy on friday?")


def test_forget_asks_first_then_leaves_no_row_and_no_embedding(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bot = bots.start()
    channel, alice, bob = slack.add_channel("general"), slack.add_user("alice"), slack.add_user("bob")
    first, _ = mention_and_wait(bots, slack, channel, alice, "What is the VPN host?")
    mention_and_wait(bots, slack, channel, alice, "No, it is vpn.acme.internal", thread=first["event"]["ts"])
    bots.client.send_form(slack.command_payload(channel, alice, "remember Standup is at 9:30"))
    mention_and_wait(bots, slack, channel, bob, "What is the deploy process?")
    assert bot.services.recall is not None
    alice_memories = _ids(bot_settings, "SELECT id FROM memories WHERE user_id = ?", alice)
    assert len(alice_memories) == 2 and all(memory in bot.services.recall.index for memory in alice_memories)

    asked = bots.client.send_form(slack.command_payload(channel, alice, "forget")).json()
    assert "cannot be undone" in asked["blocks"][0]["text"]["text"]
    assert _ids(bot_settings, "SELECT id FROM turns WHERE user_id = ?", alice), "nothing goes before confirming"

    message = slack.messages(channel)[-1]
    confirm = slack.block_action(channel, alice, message["ts"], "ember_forget_confirm")
    assert bots.client.send_interaction(confirm).status_code == 200
    [done] = slack.wait_for("response_url", lambda call: "Done." in str(call.args.get("text")))
    assert "removed 1 questions" in done.args["text"] and "2 memories" in done.args["text"]
    assert _ids(bot_settings, "SELECT id FROM turns WHERE user_id = ?", alice) == []
    assert _ids(bot_settings, "SELECT id FROM memories WHERE user_id = ?", alice) == []
    assert not any(memory in bot.services.recall.index for memory in alice_memories)
    assert len(_ids(bot_settings, "SELECT id FROM turns WHERE user_id = ?", bob)) == 1, "others keep theirs"


def _ids(settings: Settings, query: str, *params: str) -> list[int]:
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        return [row[0] for row in connection.execute(query, params)]
