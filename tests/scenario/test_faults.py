"""Slack's Web API failing under Ember: a 429 with Retry-After, a 500 and a dropped connection on
every method an answer calls, one after the other. No answer is lost, none is posted twice, and each
429 is waited out for as long as its Retry-After says."""

from __future__ import annotations

from db.repo import turn_by_question
from handlers.slack.feedback import FEEDBACK_ACTION
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.feedback import click, votes
from tests.support.scenario import answered, replies, wait_for

RETRY_AFTER = 1


def test_rate_limits_server_errors_and_dropped_connections_on_every_call_lose_no_answer(
    bots: Bots, slack: LocalSlack
) -> None:
    bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    first = slack.mention(channel, alice, "What is the VPN host?")
    assert bots.client.send_event(first).status_code == 200
    answered(slack, channel, first["event"]["ts"])
    methods = sorted({call.method for call in slack.calls} - {"auth.test"})
    assert {"chat.postMessage", "conversations.replies"} <= set(methods) or "chat.startStream" in methods, methods

    # Every one of those methods now fails three times before it works: 429, then 500, then a drop.
    for method in methods:
        slack.fail_next(method, "ratelimited", 429, RETRY_AFTER)
        slack.fail_next(method, "internal_error", 500, None)
        slack.fail_next(method, "", 0, None)
    before = len(slack.calls)
    second = slack.mention(channel, alice, "And where is the style guide?")
    assert bots.client.send_event(second).status_code == 200
    thread = second["event"]["ts"]
    wait_for(
        lambda: any(FEEDBACK_ACTION in str(m.get("blocks")) for m in replies(slack, channel, thread)),
        timeout=120,
        what="the answer with its feedback buttons",
    )
    [answer] = replies(slack, channel, thread)
    assert answer["text"] and "something went wrong" not in answer["text"]

    calls = slack.calls[before:]
    for method in methods:
        mine = [call for call in calls if call.method == method]
        if not mine:
            continue  # this answer did not need it (a permalink with nothing cited)
        assert [call.status for call in mine[:4]] == [429, 500, 0, 200], (method, [c.status for c in mine])
        assert mine[1].at - mine[0].at >= RETRY_AFTER, f"{method} retried before Retry-After"
    assert len(replies(slack, channel, first["event"]["ts"])) == 1


def test_an_answer_whose_last_update_fails_is_posted_afresh_with_buttons_that_work(
    bots: Bots, slack: LocalSlack
) -> None:
    bot = bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    first = slack.mention(channel, alice, "What is the VPN host?")
    assert bots.client.send_event(first).status_code == 200
    answered(slack, channel, first["event"]["ts"])
    final_method = "chat.stopStream" if slack.calls_to("chat.stopStream") else "chat.update"

    # The call that would put the buttons on the streamed answer fails through all its retries.
    slack.fail_next(final_method, "internal_error", 500, None, times=10)
    second = slack.mention(channel, alice, "And where is the style guide?")
    assert bots.client.send_event(second).status_code == 200
    thread = second["event"]["ts"]
    wait_for(
        lambda: any(FEEDBACK_ACTION in str(m.get("blocks")) for m in replies(slack, channel, thread)),
        timeout=120,
        what="the reposted answer with its feedback buttons",
    )
    wait_for(lambda: len(replies(slack, channel, thread)) == 1, what="the partial answer removed")
    [answer] = replies(slack, channel, thread)
    assert "something went wrong" not in answer["text"]
    assert slack.calls_to("chat.delete"), "the partial answer was deleted, not left up"

    # A vote on the reposted answer finds its turn.
    response = bots.client.send_interaction(click(slack, channel, alice, answer["ts"], FEEDBACK_ACTION))
    assert response.status_code == 200
    with bot.db.session() as session:
        turn = turn_by_question(session, channel_id=channel, question_ts=thread)
        assert turn is not None and turn.answer_ts == answer["ts"]
        turn_id = turn.id
    wait_for(lambda: votes(bot, turn_id) == [(alice, 1, "button", None)], what="the vote stored")
