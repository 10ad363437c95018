"""A process that dies mid-answer loses nothing: the next one answers what it claimed, once.

What a killed process leaves is written into the real SQLite file the way it would have written it
(db.claims), with its half-written message posted to the Slack stand-in by the bot's own token.
"""

from __future__ import annotations

from datetime import timedelta

from slack_sdk import WebClient
from sqlalchemy import update

from bot.settings import Settings
from db import Database
from db.claims import MAX_ATTEMPTS, claim_event, event_status, heartbeat, note_reply
from db.schema import HandledEvent, Instance, utcnow
from handlers.slack.answering import FAILURE_REPLY
from handlers.slack.claims import GAVE_UP_REPLY
from handlers.slack.feedback import FEEDBACK_ACTION
from playground import LocalSlack
from tests.conftest import Bots
from tests.support import scenario
from tests.support.scenario import answered, replies, wait_for

DEAD = "crashed-host:4242:deadbeef"


def leave_orphan(
    settings: Settings,
    envelope: dict[str, object],
    *,
    attempts: int = 1,
    posted: tuple[str, ...] = (),
    silent_for: timedelta = timedelta(minutes=1),
) -> None:
    """A claim held by a process whose last heartbeat was `silent_for` ago."""
    database = Database(settings.resolved_database_url)
    database.upgrade()
    event_id = str(envelope["event_id"])
    with database.session() as session:
        heartbeat(session, owner=DEAD)
        claim_event(session, event_id=event_id, lease=timedelta(minutes=10), owner=DEAD, work=envelope)
        for ts in posted:
            note_reply(session, event_id=event_id, ts=ts)
        session.execute(update(HandledEvent).where(HandledEvent.event_id == event_id).values(attempts=attempts))
        last_beat = utcnow() - silent_for
        session.execute(update(Instance).where(Instance.id == DEAD).values(heartbeat_at=last_beat))
    database.close()


def status(settings: Settings, event_id: str) -> str | None:
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            return event_status(session, event_id=event_id)
    finally:
        database.close()


def has_feedback_buttons(message: dict[str, object]) -> bool:
    return FEEDBACK_ACTION in str(message.get("blocks"))


def test_a_question_left_half_answered_by_a_dead_process_is_answered_once_at_start_up(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "What is the VPN host?")
    thread = envelope["event"]["ts"]
    half = WebClient(token="xoxb-test", base_url=slack.api_url).chat_postMessage(
        channel=channel, thread_ts=thread, text="The VPN ho"
    )
    leave_orphan(bot_settings, envelope, posted=(str(half["ts"]),))

    bots.start()
    wait_for(lambda: status(bot_settings, envelope["event_id"]) == "done", what="the claim settled")
    [reply] = answered(slack, channel, thread)
    assert reply["ts"] != half["ts"], "the half-written answer is gone"
    assert has_feedback_buttons(reply)
    # Slack's own retry of that event, later: nothing more.
    assert bots.client.send_event(envelope, retry_num=2, retry_reason="http_error").status_code == 200
    barrier = slack.mention(channel, alice, "barrier question")
    bots.client.send_event(barrier)
    answered(slack, channel, barrier["event"]["ts"])
    assert len(replies(slack, channel, thread)) == 1
    assert [t["question_ts"] for t in scenario.turns(bot_settings.data_dir, at_least=2)] == [
        thread,
        barrier["event"]["ts"],
    ]


def test_a_message_posted_but_never_noted_before_the_kill_is_removed_by_the_takeover(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    # Slack accepted the post, and the process died before noting it on the claim.
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    earlier = slack.mention(channel, alice, "What is the wiki?")
    bots.start()
    bots.client.send_event(earlier)
    [kept] = answered(slack, channel, earlier["event"]["ts"])  # the bot's own answer before the question
    envelope = slack.mention(channel, alice, "What is the VPN host?", thread_ts=earlier["event"]["ts"])
    thread = earlier["event"]["ts"]
    half = WebClient(token="xoxb-test", base_url=slack.api_url).chat_postMessage(
        channel=channel, thread_ts=thread, text="indle"
    )
    leave_orphan(bot_settings, envelope, silent_for=timedelta(days=1))
    assert bots.client.send_event(envelope, retry_num=1, retry_reason="http_timeout").status_code == 200
    wait_for(lambda: status(bot_settings, envelope["event_id"]) == "done", what="the claim settled")
    texts = [str(m.get("text")) for m in replies(slack, channel, thread)]
    assert "indle" not in texts, texts
    ours = [m["ts"] for m in replies(slack, channel, thread)]
    assert kept["ts"] in ours and half["ts"] not in ours and len(ours) == 2, texts


def test_a_redelivery_of_a_dead_processes_claim_is_answered_at_once(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    # An hour between sweeps (so an owner is presumed dead after three): only the redelivery can bring
    # the answer.
    bots.start(claim_heartbeat=3600.0)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "Where is the style guide?")
    leave_orphan(bot_settings, envelope, silent_for=timedelta(days=1))
    assert bots.client.send_event(envelope, retry_num=1, retry_reason="http_timeout").status_code == 200
    [reply] = answered(slack, channel, envelope["event"]["ts"])
    assert has_feedback_buttons(reply)


def test_a_question_that_keeps_killing_its_process_is_given_up_with_a_reply(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "What crashes you every time?")
    thread = envelope["event"]["ts"]
    leave_orphan(bot_settings, envelope, attempts=MAX_ATTEMPTS)

    bots.start()
    [reply] = answered(slack, channel, thread)
    assert reply["text"] == GAVE_UP_REPLY
    assert status(bot_settings, envelope["event_id"]) == "given_up"
    assert bots.client.send_event(envelope, retry_num=3, retry_reason="http_error").status_code == 200
    barrier = slack.mention(channel, alice, "barrier question")
    bots.client.send_event(barrier)
    answered(slack, channel, barrier["event"]["ts"])
    assert len(replies(slack, channel, thread)) == 1, "told once, never answered"


def test_a_listener_that_fails_before_answering_tells_the_asker_and_the_redelivery_answers(
    bots: Bots, slack: LocalSlack, bot_settings: Settings
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    # Which kind of channel this is cannot be learnt: the connection drops on every retry.
    slack.fail_next("conversations.info", "", 0, None, times=4)
    envelope = slack.mention(channel, alice, "What is the VPN host?")
    thread = envelope["event"]["ts"]
    assert bots.client.send_event(envelope).status_code == 200
    [told] = answered(slack, channel, thread)
    assert told["text"] == FAILURE_REPLY
    wait_for(lambda: status(bot_settings, envelope["event_id"]) == "failed", what="the claim marked failed")

    # Slack's redelivery is not dropped as "being answered": it is answered, once.
    assert bots.client.send_event(envelope, retry_num=1, retry_reason="http_timeout").status_code == 200
    wait_for(
        lambda: has_feedback_buttons(replies(slack, channel, thread)[-1]),
        timeout=120,
        what="the answer after the notice",
    )
    assert len(replies(slack, channel, thread)) == 2
    wait_for(lambda: status(bot_settings, envelope["event_id"]) == "done", what="the claim settled")
