"""Showing an answer in Slack while the model is still writing it.

Three ways, chosen per `SlackStreamer` (the writers are in handlers.slack.writers):

- native: `chat.startStream` / `chat.appendStream` / `chat.stopStream`. Slack renders the streamed
  `markdown_text` as Markdown itself, so the model's text goes out unconverted.
- fallback (no thread, or startStream refused): `chat.postMessage`, then `chat.update` with
  `to_mrkdwn(text so far)` at most once per `update_interval`, and a last update with the final text.
- a slash command's response_url, when Ember may not post in the channel (`not_in_channel`): only
  the final answer, once.

Nothing is posted before the model's first visible text: a placeholder would be one more message to
clean up when answering fails, and `set_status` covers the wait. Appends and updates are throttled
with the injected clock only when text arrives; there is no timer thread. A streamer is used from
one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers.slack.mrkdwn import MIN_LIMIT
from handlers.slack.writers import (
    Api,
    NativeWriter,
    PostedAnswer,
    Respond,
    RespondWriter,
    UpdateWriter,
    Writer,
    describe,
    retry_after,
    slack_error,
)

log = logging.getLogger(__name__)

Block = dict[str, Any]

DEFAULT_ERROR_TEXT = "Sorry, something went wrong while I was answering. Please try again in a moment."
# startStream errors that mean the workspace or app cannot stream at all (not this one call).
NATIVE_UNAVAILABLE_ERRORS = frozenset(
    {"unknown_method", "not_allowed", "missing_scope", "not_allowed_token_type", "method_deprecated"}
)
# Errors that mean Ember may not post in the channel at all: answer through the response_url, if any.
NOT_IN_CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found"})
__all__ = ["PostedAnswer", "SlackStreamer", "StreamingSupport", "set_status", "stream_answer"]


class StreamingSupport:
    """Remembers workspaces whose app cannot stream natively, so later answers go straight to updates."""

    def __init__(self) -> None:
        self._unavailable: set[str] = set()
        self._lock = threading.Lock()

    def allows(self, team_id: str | None) -> bool:
        with self._lock:
            return team_id not in self._unavailable

    def mark_unavailable(self, team_id: str | None) -> None:
        if team_id is not None:
            with self._lock:
                self._unavailable.add(team_id)


def set_status(client: WebClient, channel: str, thread_ts: str, status: str) -> None:
    """Set the assistant thread's status ("is thinking…"); an empty status clears it. Never raises."""
    try:
        client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread_ts, status=status)
    except Exception as exc:  # the status is decoration; the answer must not wait on it
        log.warning("assistant.threads.setStatus failed in %s: %s", channel, describe(exc))


class SlackStreamer:
    """One answer, streamed into `channel` (in `thread_ts`) as `append` receives the model's Markdown."""

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str | None,
        recipient_team_id: str | None = None,
        recipient_user_id: str | None = None,
        native: bool = True,
        update_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        text_limit: int = 3_500,
        respond: Respond | None = None,
        on_posted: Callable[[str], None] | None = None,
    ) -> None:
        if text_limit < MIN_LIMIT:
            raise ValueError(f"text_limit must be at least {MIN_LIMIT}, not {text_limit}")
        self._api = Api(client, channel, thread_ts, sleep, on_posted)
        recipients = {"recipient_team_id": recipient_team_id, "recipient_user_id": recipient_user_id}
        self._writer: Writer = (
            NativeWriter(self._api, text_limit, recipients)
            if native and thread_ts
            else UpdateWriter(self._api, text_limit)
        )
        self._respond = respond
        self._interval = update_interval
        self._clock = clock
        self._raw = ""
        self._next_flush = float("-inf")
        self._closed = False
        # True once chat.startStream failed in a way that will not change for this workspace.
        self.native_unavailable = False

    @property
    def streaming_natively(self) -> bool:
        return isinstance(self._writer, NativeWriter)

    def append(self, delta: str) -> None:
        """Add the model's next piece of text; Slack sees it at the next allowed update."""
        self._check_open()
        self._raw += delta
        if self._clock() >= self._next_flush:
            self._flush()

    def finish(self, final_text: str | None = None, *, blocks: list[Block] | None = None) -> PostedAnswer:
        """Show the final answer (`final_text` replaces what was streamed) with `blocks` on the last message.

        When the last update fails even after its retries, the whole answer is posted afresh and the
        partial messages removed; raises SlackApiError when Slack refuses that too.
        """
        self._check_open()
        self._closed = True
        text = self._raw if final_text is None else final_text
        try:
            try:
                return self._writer.finish(text, blocks or [])
            except SlackApiError as err:
                if not self._should_fall_back(err):
                    raise
                return self._writer.finish(text, blocks or [])
        except (SlackApiError, OSError) as exc:
            shown = self._writer.all_ts()
            if not shown:
                raise
            return self._repost(text, blocks or [], shown, exc)

    def _repost(self, text: str, blocks: list[Block], shown: list[str], exc: Exception) -> PostedAnswer:
        """The final update failed after its retries: a half answer without feedback buttons would
        stay up. The whole answer goes up afresh, then the partial messages go."""
        channel = self._api.channel
        log.warning("the final update of an answer in %s failed (%s); posting it afresh", channel, describe(exc))
        posted = self._writer.repost(text, blocks)
        for ts in shown:
            if ts in posted.all_ts:
                continue
            try:
                self._api.delete(ts)
            except (SlackApiError, OSError) as err:
                log.warning("could not remove the partial answer %s in %s: %s", ts, self._api.channel, describe(err))
        return posted

    def fail(self, message: str) -> None:
        """Replace whatever was shown with `message` (mrkdwn). Logs, never raises: it runs on error paths."""
        self._closed = True
        try:
            self._writer.fail(message)
        except (SlackApiError, OSError) as exc:
            log.error("could not show the error message in %s: %s", self._api.channel, describe(exc))

    def _flush(self) -> None:
        try:
            self._writer.push(self._raw)
        except SlackApiError as err:
            if self._should_fall_back(err):
                self._flush()
                return
            self._skip_update(err)
        except OSError as exc:
            self._skip_update(exc)
        else:
            # Until something is shown, every delta may bring the first visible text: no waiting.
            if self._writer.all_ts():
                self._next_flush = self._clock() + self._interval

    def _should_fall_back(self, err: SlackApiError) -> bool:
        """Before anything is shown: answer through the response_url where Ember may not post, and post
        and update where native streaming is refused."""
        writer, error = self._writer, slack_error(err)
        if writer.all_ts() or error == "ratelimited" or isinstance(writer, RespondWriter):
            return False
        if error in NOT_IN_CHANNEL_ERRORS and self._respond is not None:
            log.info("cannot post in %s (%s); answering through the response_url", self._api.channel, error)
            self._writer = RespondWriter(self._respond, writer.limit)
            return True
        if not isinstance(writer, NativeWriter):
            return False
        log.info("chat.startStream refused (%s); posting and updating instead", slack_error(err))
        self.native_unavailable = slack_error(err) in NATIVE_UNAVAILABLE_ERRORS
        self._writer = UpdateWriter(self._api, writer.limit)
        return True

    def _skip_update(self, exc: Exception) -> None:
        # A missed intermediate update costs nothing: the next one (or the final one) carries all text.
        wait = retry_after(exc) if slack_error(exc) == "ratelimited" else self._interval
        log.info("skipping a streaming update in %s (%s); next in %.1fs", self._api.channel, describe(exc), wait)
        self._next_flush = self._clock() + wait

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this answer is already finished")


def stream_answer(
    client: WebClient,
    deltas: Iterable[str],
    *,
    channel: str,
    thread_ts: str | None,
    recipient_team_id: str | None = None,
    recipient_user_id: str | None = None,
    native: bool = True,
    support: StreamingSupport | None = None,
    team_id: str | None = None,
    update_interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    text_limit: int = 3_500,
    final_text: Callable[[], str] | None = None,
    blocks: list[Block] | None = None,
    error_text: str = DEFAULT_ERROR_TEXT,
    respond: Respond | None = None,
    on_posted: Callable[[str], None] | None = None,
) -> PostedAnswer:
    """Stream `deltas` and finish with `final_text()` (called after the last delta) and `blocks`.

    With `support`, a workspace (`team_id`) that cannot stream natively is remembered and skipped later.
    With `respond` (a slash command's), a channel Ember may not post in gets the answer through it.
    `on_posted(ts)` hears of every message the answer posts.
    If the deltas raise, or Slack refuses the final answer, `error_text` replaces the partial answer
    and the exception propagates.
    """
    streamer = SlackStreamer(
        client,
        channel=channel,
        thread_ts=thread_ts,
        recipient_team_id=recipient_team_id,
        recipient_user_id=recipient_user_id,
        native=native and (support is None or support.allows(team_id)),
        update_interval=update_interval,
        clock=clock,
        sleep=sleep,
        text_limit=text_limit,
        respond=respond,
        on_posted=on_posted,
    )
    try:
        try:
            for delta in deltas:
                streamer.append(delta)
            final = final_text() if final_text else None
        except Exception:
            streamer.fail(error_text)
            raise
        try:
            return streamer.finish(final, blocks=blocks)
        except (SlackApiError, OSError):
            streamer.fail(error_text)  # Slack took neither the final update nor a fresh post
            raise
    finally:
        if support is not None and streamer.native_unavailable:
            support.mark_unavailable(team_id)
