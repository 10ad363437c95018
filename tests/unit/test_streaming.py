"""Streaming answers into Slack threads, against the local Slack stand-in with slack_sdk's real WebClient."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from handlers.slack.mrkdwn import split_message, to_mrkdwn
from handlers.slack.streaming import SlackStreamer, StreamingSupport, set_status, stream_answer
from handlers.slack.writers import EMPTY_ANSWER
from playground import LocalSlack

ANSWER = (
    "## Resetting the VPN\n\n"
    "First, open **Settings** and pick *Network*.\n\n"
    "- Click `Reset` (needs admin & a <token>)\n"
    "- See [the wiki](https://wiki.example.com/vpn) or ask <@U0HELP>\n\n"
    "```sh\nvpn reset --all **now**\n```\n"
    "That's it."
)
FEEDBACK = [{"type": "context_actions", "elements": [{"type": "feedback_buttons", "action_id": "feedback"}]}]


@dataclass
class FakeClock:
    """Time that moves only when a test (or the streamer's sleep) moves it."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Thread:
    slack: LocalSlack
    client: WebClient
    channel: str
    user: str
    ts: str

    def replies(self) -> list[dict]:
        """Ember's messages in the thread, oldest first."""
        return [m for m in self.slack.messages(self.channel, self.ts) if m["ts"] != self.ts]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.replies()]


@pytest.fixture()
def thread(slack: LocalSlack) -> Thread:
    channel = slack.add_channel("general")
    user = slack.add_user("alice")
    asked = slack.mention(channel, user, "how do I reset the VPN?")
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    return Thread(slack, client, channel, user, asked["event"]["ts"])


def streamer(thread: Thread, clock: FakeClock, **options: object) -> SlackStreamer:
    return SlackStreamer(
        thread.client,
        channel=thread.channel,
        thread_ts=thread.ts,
        recipient_team_id="T0001",
        recipient_user_id=thread.user,
        clock=clock,
        sleep=clock.sleep,
        **options,  # type: ignore[arg-type]
    )


def pieces(text: str, size: int = 7) -> Iterator[str]:
    """The text in model-sized deltas."""
    for start in range(0, len(text), size):
        yield text[start : start + size]


def feed(
    s: SlackStreamer, clock: FakeClock, slack: LocalSlack, text: str, method: str, step: float = 0.25
) -> list[float]:
    """Append `text` in pieces, `step` seconds apart; returns the clock times at which `method` was called."""
    times = []
    for delta in pieces(text):
        before = len(slack.calls_to(method))
        s.append(delta)
        if len(slack.calls_to(method)) > before:
            times.append(clock.now)
        clock.advance(step)
    return times


def assert_throttled(times: list[float], interval: float) -> None:
    assert all(later - earlier >= interval for earlier, later in itertools.pairwise(times)), times


# -- native streaming ------------------------------------------------------------------------


def test_native_stream_starts_appends_and_stops(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock)
    append_times = feed(s, clock, slack, ANSWER, "chat.appendStream")
    posted = s.finish(blocks=FEEDBACK)

    start = slack.calls_to("chat.startStream")
    assert len(start) == 1 and start[0].ok
    assert start[0].args["thread_ts"] == thread.ts
    assert start[0].args["recipient_team_id"] == "T0001" and start[0].args["recipient_user_id"] == thread.user
    appends = slack.calls_to("chat.appendStream")
    assert 1 <= len(appends) <= len(ANSWER) // 7 // 4 + 1
    assert_throttled(append_times, 1.0)
    stop = slack.calls_to("chat.stopStream")
    assert len(stop) == 1 and stop[0].args["blocks"] == FEEDBACK
    assert not slack.calls_to("chat.postMessage") and not slack.calls_to("chat.update")

    # Slack renders streamed markdown_text as Markdown: what the model wrote is what Slack holds.
    assert thread.texts() == [ANSWER]
    assert thread.replies()[0]["blocks"] == FEEDBACK
    assert posted.text == ANSWER and posted.streamed_natively
    assert posted.ts == thread.replies()[0]["ts"] == start[0].response["ts"]
    assert posted.all_ts == [posted.ts]


def test_native_final_text_that_extends_the_stream_is_appended(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock)
    feed(s, clock, slack, ANSWER, "chat.appendStream")
    note = "\n\n_(answer cut to fit)_"
    posted = s.finish(ANSWER + note)
    assert thread.texts() == [ANSWER + note]
    assert posted.text == ANSWER + note
    assert not slack.calls_to("chat.update")


def test_native_final_text_that_differs_replaces_the_stream(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock)
    feed(s, clock, slack, "A first draft of the answer", "chat.appendStream")
    posted = s.finish("The **real** answer", blocks=FEEDBACK)
    assert thread.texts() == ["The **real** answer"]
    message = thread.replies()[0]
    assert message["blocks"] == [{"type": "markdown", "text": "The **real** answer"}, *FEEDBACK]
    assert posted.ts == message["ts"] and posted.text == "The **real** answer"


def test_native_long_answer_continues_in_follow_up_messages(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 4 for i in range(12)]
    answer = "\n\n".join(paragraphs)
    s = streamer(thread, clock, text_limit=400)
    feed(s, clock, slack, answer, "chat.appendStream")
    posted = s.finish(blocks=FEEDBACK)

    texts = thread.texts()
    assert len(texts) > 3
    assert all(len(t) <= 400 for t in texts)
    assert "".join(texts) == answer
    assert posted.all_ts == [m["ts"] for m in thread.replies()] and posted.ts == posted.all_ts[0]
    assert len(slack.calls_to("chat.startStream")) == len(slack.calls_to("chat.stopStream")) == len(texts)
    # Only the last message carries the feedback blocks.
    assert [m.get("blocks") for m in thread.replies()] == [None] * (len(texts) - 1) + [FEEDBACK]
    # Cuts fall between words, not inside them.
    assert all(t[-1].isspace() for t in texts[:-1])


def test_native_long_code_block_is_closed_and_reopened(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    code = "".join(f"print({i})  # step {i}\n" for i in range(40))
    answer = f"Run this:\n\n```python\n{code}```\nDone."
    s = streamer(thread, clock, text_limit=300)
    feed(s, clock, slack, answer, "chat.appendStream")
    s.finish()
    texts = thread.texts()
    assert len(texts) > 2 and all(len(t) <= 300 for t in texts)
    assert all(t.count("```") % 2 == 0 for t in texts), texts
    body = "".join(t.removeprefix("```python\n").removesuffix("```") for t in texts[1:])
    assert texts[0].startswith("Run this:") and "".join(texts).count("print(") == 40
    assert "print(39)  # step 39\n" in body


# -- falling back to post-and-update -------------------------------------------------------


def test_falls_back_to_updates_when_start_stream_is_unknown(slack: LocalSlack, thread: Thread) -> None:
    slack.fail_next("chat.startStream", error="unknown_method", status=200, retry_after=None)
    clock = FakeClock()
    s = streamer(thread, clock)
    update_times = feed(s, clock, slack, ANSWER, "chat.update")
    posted = s.finish(blocks=FEEDBACK)

    assert s.native_unavailable and not posted.streamed_natively
    assert len(slack.calls_to("chat.startStream")) == 1
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert not slack.calls_to("chat.appendStream")
    assert len(update_times) >= 2
    assert_throttled(update_times, 1.0)
    assert thread.texts() == [to_mrkdwn(ANSWER)]
    message = thread.replies()[0]
    assert message["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": to_mrkdwn(ANSWER)}}, *FEEDBACK]
    assert posted.text == to_mrkdwn(ANSWER) and posted.ts == message["ts"]


def test_first_text_is_posted_at_once_and_updates_wait_for_the_interval(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, native=False, update_interval=2.0)
    s.append("  ")
    assert not slack.calls_to("chat.postMessage")  # nothing visible yet
    s.append("Hello")
    assert len(slack.calls_to("chat.postMessage")) == 1
    clock.advance(1.9)
    s.append(" world")
    assert not slack.calls_to("chat.update")
    clock.advance(0.1)
    s.append("!")
    assert [c.args["text"] for c in slack.calls_to("chat.update")] == ["  Hello world!"]
    s.finish()
    assert thread.texts() == ["  Hello world!"]
    # The final text equals the last update, so no extra call was needed.
    assert len(slack.calls_to("chat.update")) == 1


def test_no_thread_means_no_native_streaming(slack: LocalSlack) -> None:
    user = slack.add_user("bob")
    dm = slack.add_channel("dm-bob", kind="im", user=user)
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    clock = FakeClock()
    posted = stream_answer(client, pieces(ANSWER), channel=dm, thread_ts=None, clock=clock, sleep=clock.sleep)
    assert not slack.calls_to("chat.startStream")
    assert [m["text"] for m in slack.messages(dm)] == [to_mrkdwn(ANSWER)]
    assert "thread_ts" not in slack.calls_to("chat.postMessage")[0].args
    assert not posted.streamed_natively


def test_streaming_support_remembers_a_workspace_without_native_streaming(slack: LocalSlack, thread: Thread) -> None:
    support = StreamingSupport()
    slack.fail_next("chat.startStream", error="not_allowed", status=200, retry_after=None)
    clock = FakeClock()
    options = {"channel": thread.channel, "thread_ts": thread.ts, "clock": clock, "sleep": clock.sleep}
    first = stream_answer(thread.client, pieces("one"), support=support, team_id="T0001", **options)  # type: ignore[arg-type]
    assert not support.allows("T0001") and support.allows("T0002")
    second = stream_answer(thread.client, pieces("two"), support=support, team_id="T0001", **options)  # type: ignore[arg-type]
    assert len(slack.calls_to("chat.startStream")) == 1
    assert thread.texts() == ["one", "two"]
    assert not first.streamed_natively and not second.streamed_natively


def test_a_per_call_start_stream_error_is_not_remembered(slack: LocalSlack, thread: Thread) -> None:
    slack.fail_next("chat.startStream", error="invalid_arguments", status=200, retry_after=None)
    s = streamer(thread, FakeClock())
    s.append("hi")
    assert not s.native_unavailable and not s.streaming_natively
    assert s.finish().text == "hi"


def test_long_answer_is_split_into_follow_up_messages(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    answer = "\n\n".join(f"**Step {i}.** Do the *thing* number {i} & check it worked." for i in range(20))
    s = streamer(thread, clock, native=False, text_limit=300)
    update_times = feed(s, clock, slack, answer, "chat.update")
    posted = s.finish(blocks=FEEDBACK)

    expected = split_message(to_mrkdwn(answer), 300)
    assert len(expected) > 2
    assert thread.texts() == expected
    assert "".join(thread.texts()) == to_mrkdwn(answer)
    assert posted.all_ts == [m["ts"] for m in thread.replies()] and posted.ts == posted.all_ts[0]
    assert [m.get("blocks") is not None for m in thread.replies()] == [False] * (len(expected) - 1) + [True]
    assert_throttled(update_times, 1.0)


def test_messages_no_longer_needed_are_deleted(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, native=False, text_limit=100)
    feed(s, clock, slack, "word " * 60, "chat.update", step=1.0)
    assert len(thread.replies()) >= 3
    posted = s.finish("Short after all.")
    assert thread.texts() == ["Short after all."]
    assert posted.all_ts == [thread.replies()[0]["ts"]]
    assert len(slack.calls_to("chat.delete")) >= 2


def test_text_limit_too_small_is_refused(thread: Thread) -> None:
    with pytest.raises(ValueError, match="text_limit"):
        streamer(thread, FakeClock(), text_limit=10)


def test_empty_answer_still_posts_something(slack: LocalSlack, thread: Thread) -> None:
    for native in (True, False):
        posted = streamer(thread, FakeClock(), native=native).finish("  ")
        assert posted.text == EMPTY_ANSWER
    assert thread.texts() == [EMPTY_ANSWER, EMPTY_ANSWER]


# -- rate limits ---------------------------------------------------------------------------


def test_ratelimited_update_is_retried_by_the_client(slack: LocalSlack, thread: Thread) -> None:
    client = WebClient(
        token="xoxb-test", base_url=slack.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)]
    )
    clock = FakeClock()
    s = SlackStreamer(client, channel=thread.channel, thread_ts=thread.ts, native=False, clock=clock, sleep=clock.sleep)
    s.append("Hello")
    slack.fail_next("chat.update", status=429, retry_after=1)
    clock.advance(1.0)
    s.append(" there")
    updates = slack.calls_to("chat.update")
    assert [c.status for c in updates] == [429, 200]
    s.finish("Hello there, friend.")
    assert thread.texts() == ["Hello there, friend."]
    assert not clock.slept  # slack_sdk waited, not the streamer


def test_ratelimited_update_that_escapes_is_skipped(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, native=False)
    s.append("Hello")
    slack.fail_next("chat.update", status=429, retry_after=5)
    clock.advance(1.0)
    s.append(" there")  # ratelimited: skipped, and no update for 5 s
    assert [c.status for c in slack.calls_to("chat.update")] == [429]
    for _ in range(4):
        clock.advance(1.0)
        s.append(".")
    assert len(slack.calls_to("chat.update")) == 1
    clock.advance(1.0)
    s.append("!")
    assert slack.calls_to("chat.update")[-1].args["text"] == "Hello there....!"
    s.finish()
    assert thread.texts() == ["Hello there....!"]


def test_ratelimited_final_update_waits_and_lands(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, native=False)
    s.append("Hello")
    slack.fail_next("chat.update", status=429, retry_after=3, times=2)
    posted = s.finish("Hello, all done.")
    assert clock.slept == [3.0, 3.0]
    assert thread.texts() == ["Hello, all done."] and posted.text == "Hello, all done."


def test_ratelimited_append_keeps_the_text_for_later(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock)
    s.append("Hello")
    slack.fail_next("chat.appendStream", status=429, retry_after=2)
    clock.advance(1.0)
    s.append(" there")
    clock.advance(2.0)
    s.append(" friend")
    slack.fail_next("chat.stopStream", status=429, retry_after=1)
    posted = s.finish()
    assert thread.texts() == ["Hello there friend"] and posted.streamed_natively
    assert [c.status for c in slack.calls_to("chat.appendStream")] == [429, 200]
    assert clock.slept == [1.0]


# -- errors ----------------------------------------------------------------------------------


def test_fail_replaces_a_streamed_answer(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, text_limit=100)
    feed(s, clock, slack, "partial answer " * 20, "chat.appendStream")
    assert len(thread.replies()) > 1
    s.fail("Sorry, the model failed.")
    assert thread.texts() == ["Sorry, the model failed."]
    assert slack.calls_to("chat.stopStream")
    with pytest.raises(RuntimeError):
        s.append("more")


def test_fail_replaces_an_updated_answer(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, native=False)
    feed(s, clock, slack, "partial answer", "chat.update")
    s.fail("Sorry, the model failed.")
    assert thread.texts() == ["Sorry, the model failed."]


def test_fail_before_anything_was_shown_posts_the_error(slack: LocalSlack, thread: Thread) -> None:
    streamer(thread, FakeClock()).fail("Sorry.")
    assert thread.texts() == ["Sorry."]


def test_fail_never_raises(slack: LocalSlack, thread: Thread) -> None:
    s = streamer(thread, FakeClock(), native=False)
    s.append("partial")
    slack.fail_next("chat.update", error="message_not_found", status=200, retry_after=None)
    s.fail("Sorry.")  # logged, not raised


def test_stream_answer_shows_the_error_when_generation_breaks(slack: LocalSlack, thread: Thread) -> None:
    def broken() -> Iterator[str]:
        yield "The answer is "
        raise RuntimeError("CUDA out of memory")

    clock = FakeClock()
    with pytest.raises(RuntimeError, match="CUDA"):
        stream_answer(
            thread.client,
            broken(),
            channel=thread.channel,
            thread_ts=thread.ts,
            clock=clock,
            sleep=clock.sleep,
            error_text="Sorry, I broke.",
        )
    assert thread.texts() == ["Sorry, I broke."]


def test_stream_answer_uses_final_text_and_blocks(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    posted = stream_answer(
        thread.client,
        pieces(ANSWER),
        channel=thread.channel,
        thread_ts=thread.ts,
        native=False,
        clock=clock,
        sleep=clock.sleep,
        final_text=lambda: ANSWER + "\n\n(from the wiki)",
        blocks=FEEDBACK,
    )
    assert thread.texts() == [to_mrkdwn(ANSWER + "\n\n(from the wiki)")]
    assert thread.replies()[0]["blocks"][-1] == FEEDBACK[0]
    assert posted.ts == thread.replies()[0]["ts"]


# -- a final update that will not land ------------------------------------------------------


def test_a_stream_that_cannot_be_stopped_is_posted_afresh_with_its_buttons(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock)
    feed(s, clock, slack, "The VPN host is", "chat.appendStream")
    [partial] = thread.replies()
    slack.fail_next("chat.stopStream", error="internal_error", status=500, retry_after=None, times=10)
    posted = s.finish("The VPN host is vpn.acme.internal.", blocks=FEEDBACK)
    [answer] = thread.replies()
    assert answer["ts"] != partial["ts"] and posted.ts == answer["ts"]
    assert answer["text"] == "The VPN host is vpn.acme.internal."
    assert answer["blocks"][-1] == FEEDBACK[0], "the buttons are on the reposted answer"
    assert [c.args["ts"] for c in slack.calls_to("chat.delete")] == [partial["ts"]]


def test_an_update_that_cannot_land_is_posted_afresh_with_its_buttons(slack: LocalSlack, thread: Thread) -> None:
    clock = FakeClock()
    s = streamer(thread, clock, native=False, text_limit=100)
    feed(s, clock, slack, "partial answer " * 10, "chat.update")
    partials = [m["ts"] for m in thread.replies()]
    assert len(partials) == 2
    slack.fail_next("chat.update", error="internal_error", status=500, retry_after=None, times=10)
    posted = s.finish("A short answer in the end.", blocks=FEEDBACK)
    [answer] = thread.replies()
    assert answer["ts"] not in partials and posted.all_ts == [answer["ts"]]
    assert answer["text"] == "A short answer in the end." and answer["blocks"][-1] == FEEDBACK[0]


def test_when_the_repost_fails_too_the_asker_hears_so(slack: LocalSlack, thread: Thread) -> None:
    def deltas() -> Iterator[str]:
        yield "partial"
        # Shown. Now the final update and a fresh post fail; the error message lands.
        slack.fail_next("chat.update", error="internal_error", status=500, retry_after=None)
        slack.fail_next("chat.postMessage", error="internal_error", status=500, retry_after=None)

    clock = FakeClock()
    with pytest.raises(SlackApiError):
        stream_answer(
            thread.client,
            deltas(),
            channel=thread.channel,
            thread_ts=thread.ts,
            native=False,
            clock=clock,
            sleep=clock.sleep,
            final_text=lambda: "The end.",
            blocks=FEEDBACK,
            error_text="Sorry, I broke.",
        )
    assert thread.texts() == ["Sorry, I broke."]


# -- assistant status ------------------------------------------------------------------------


def test_set_status(slack: LocalSlack, thread: Thread) -> None:
    set_status(thread.client, thread.channel, thread.ts, "is thinking…")
    (call,) = slack.calls_to("assistant.threads.setStatus")
    assert call.args == {"channel_id": thread.channel, "thread_ts": thread.ts, "status": "is thinking…"}


def test_set_status_failures_do_not_raise(slack: LocalSlack, thread: Thread) -> None:
    slack.fail_next("assistant.threads.setStatus", error="not_allowed", status=200, retry_after=None)
    set_status(thread.client, thread.channel, thread.ts, "is thinking…")
    slack.fail_next("assistant.threads.setStatus", status=429, retry_after=1)
    set_status(thread.client, thread.channel, thread.ts, "is thinking…")
    unreachable = WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/api/", timeout=2)
    set_status(unreachable, thread.channel, thread.ts, "is thinking…")


def test_importing_the_modules_does_not_import_torch() -> None:
    code = "import sys, handlers.slack.streaming, handlers.slack.mrkdwn; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
