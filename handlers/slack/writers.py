"""How a growing answer reaches Slack, one writer per way (see handlers.slack.streaming):

- `NativeWriter`: chat.startStream / appendStream / stopStream, Markdown as the model wrote it.
- `UpdateWriter`: chat.postMessage, then chat.update with mrkdwn, split over messages when long.
- `RespondWriter`: a slash command's response_url, where Ember cannot post in the channel; it only
  sends the final answer.

Every writer raises SlackApiError without losing track of what landed.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from handlers.slack.mrkdwn import Split, find_split, split_message, to_mrkdwn
from handlers.slack.text import clip_for_slack

log = logging.getLogger(__name__)

Block = dict[str, Any]
Call = Callable[..., SlackResponse]
# A slash command's `respond` (Bolt's Respond): posts to its response_url.
Respond = Callable[..., object]

# Shown when the model produced nothing visible; Slack refuses empty messages.
EMPTY_ANSWER = "_(no answer)_"
SECTION_TEXT_LIMIT = 3_000
# Extra tries for calls that must land (final text, error text) when a 429 escapes the client.
FINAL_RATELIMIT_RETRIES = 3


@dataclass(frozen=True)
class PostedAnswer:
    """What an answer became in Slack."""

    ts: str | None  # the first message: feedback and memory refer to it (None: sent through a response_url)
    all_ts: list[str]
    text: str  # the whole answer as sent: Markdown when streamed natively, else mrkdwn
    streamed_natively: bool


class Api:
    """The WebClient calls a streamer makes, in one channel and thread."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str | None,
        sleep: Callable[[float], None],
        on_posted: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self._sleep = sleep
        self._on_posted = on_posted

    def posted(self, ts: str) -> str:
        """A new message of this answer is in Slack (whoever takes the answer over must clear it)."""
        if self._on_posted is not None:
            try:
                self._on_posted(ts)
            except Exception:  # bookkeeping; the answer goes on
                log.exception("could not note message %s in %s", ts, self.channel)
        return ts

    def call(self, method: Call, *, must_land: bool, **kwargs: Any) -> SlackResponse:
        """`method(channel=..., **kwargs)`; when it must land, a rate limit that escapes is waited out."""
        for attempt in range(FINAL_RATELIMIT_RETRIES + 1):
            try:
                return method(channel=self.channel, **kwargs)
            except SlackApiError as err:
                if not must_land or slack_error(err) != "ratelimited" or attempt == FINAL_RATELIMIT_RETRIES:
                    raise
                self._sleep(retry_after(err))
        raise AssertionError("unreachable")

    def post(self, text: str, blocks: list[Block] | None, *, must_land: bool) -> str:
        response = self.call(
            self.client.chat_postMessage, must_land=must_land, thread_ts=self.thread_ts, text=text, blocks=blocks
        )
        return self.posted(str(response["ts"]))

    def update(self, ts: str, text: str, blocks: list[Block] | None, *, must_land: bool) -> None:
        self.call(self.client.chat_update, must_land=must_land, ts=ts, text=text, blocks=blocks)

    def delete(self, ts: str) -> None:
        self.call(self.client.chat_delete, must_land=True, ts=ts)

    def show_error(self, all_ts: list[str], message: str) -> None:
        """`message` in place of the first message (or a new one); the others go."""
        # Explicit blocks replace any content a streamed message keeps in blocks of its own.
        blocks = [section(message)]
        if not all_ts:
            self.post(message, blocks, must_land=True)
            return
        self.update(all_ts[0], message, blocks, must_land=True)
        for ts in all_ts[1:]:
            self.delete(ts)


class Writer(ABC):
    """How a growing answer reaches Slack; raises SlackApiError without losing track of what landed."""

    def __init__(self, api: Api, limit: int) -> None:
        self.api = api
        self.limit = limit

    @abstractmethod
    def all_ts(self) -> list[str]:
        """Messages shown so far, in order."""

    @abstractmethod
    def push(self, raw: str) -> None:
        """Show the answer so far (raw Markdown); may raise, to be retried at the next push."""

    @abstractmethod
    def finish(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        """Show the final answer; raises only when Slack would not take it."""

    @abstractmethod
    def fail(self, message: str) -> None:
        """Show `message` instead of the answer."""

    @abstractmethod
    def repost(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        """Post the final answer as new messages, touching none already shown (after `finish` failed)."""


class UpdateWriter(Writer):
    """Post-then-update: every message shows its part of `split_message(to_mrkdwn(text so far))`."""

    def __init__(self, api: Api, limit: int) -> None:
        super().__init__(api, limit)
        self._ts: list[str] = []
        self._shown: list[str] = []

    def all_ts(self) -> list[str]:
        return list(self._ts)

    def push(self, raw: str) -> None:
        for index, part in enumerate(split_message(to_mrkdwn(raw), self.limit)):
            self._show(index, part, None, must_land=False)

    def finish(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        text = to_mrkdwn(raw) if raw.strip() else EMPTY_ANSWER
        parts = split_message(text, self.limit)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            self._show(index, part, _with_text(part, blocks) if last and blocks else None, must_land=True)
        for ts in self._ts[len(parts) :]:
            self.api.delete(ts)
        return PostedAnswer(self._ts[0], self._ts[: len(parts)], text, streamed_natively=False)

    def fail(self, message: str) -> None:
        self.api.show_error(self._ts, message)

    def repost(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        return UpdateWriter(self.api, self.limit).finish(raw, blocks)

    def _show(self, index: int, part: str, blocks: list[Block] | None, *, must_land: bool) -> None:
        if index == len(self._ts):
            self._ts.append(self.api.post(part, blocks, must_land=must_land))
            self._shown.append(part)
        elif self._shown[index] != part or blocks:
            self.api.update(self._ts[index], part, blocks, must_land=must_land)
            self._shown[index] = part


@dataclass
class _Stream:
    """The native message being streamed: its text is `prefix + raw[start:]`, cut once it grows too long."""

    start: int
    prefix: str = ""  # a reopened code fence
    ts: str | None = None
    sent: str = ""
    cut: Split | None = None
    done: list[str] = field(default_factory=list)  # ts of the earlier, stopped messages


class NativeWriter(Writer):
    """chat.startStream/appendStream/stopStream; the raw Markdown only grows, so only new text is sent."""

    def __init__(self, api: Api, limit: int, recipients: dict[str, str | None]) -> None:
        super().__init__(api, limit)
        self._recipients = {k: v for k, v in recipients.items() if v}
        self._stream = _Stream(start=0)
        self._pushed = ""  # the raw text of the last push; the stream's positions refer to it

    def all_ts(self) -> list[str]:
        stream = self._stream
        return stream.done + ([stream.ts] if stream.ts else [])

    def push(self, raw: str, *, must_land: bool = False) -> None:
        self._pushed = raw
        while True:
            target, complete = self._target(raw, final=must_land)
            self._send(target, must_land=must_land)
            if not complete:
                return
            self._stop(blocks=None, must_land=must_land)
            self._next_message()

    def finish(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        if not self._continues(raw):
            return self._replace(raw, blocks)
        self.push(raw, must_land=True)
        if self._stream.ts is None:
            self._send(EMPTY_ANSWER, must_land=True)
            raw = EMPTY_ANSWER
        self._stop(blocks=blocks or None, must_land=True)
        all_ts = self._stream.done
        return PostedAnswer(all_ts[0], list(all_ts), raw, streamed_natively=True)

    def fail(self, message: str) -> None:
        try:
            self._stop(blocks=None, must_land=True)
        except SlackApiError as err:
            log.warning("could not stop the stream in %s: %s", self.api.channel, slack_error(err))
        self.api.show_error(self.all_ts(), message)

    def _continues(self, raw: str) -> bool:
        """Whether `raw` keeps everything already streamed (and any cut already planned) as it is."""
        stream = self._stream
        if stream.cut is not None:
            return raw.startswith(self._pushed)
        streamed = stream.start + max(0, len(stream.sent) - len(stream.prefix))
        return raw.startswith(self._pushed[:streamed])

    def _target(self, raw: str, *, final: bool) -> tuple[str, bool]:
        """The text the current message should show now, and whether it is complete (cut)."""
        stream = self._stream
        text = stream.prefix + raw[stream.start :]
        if stream.cut is None and len(text.rstrip()) > self.limit:
            stream.cut = find_split(text, self.limit, floor=len(stream.sent))
        if stream.cut is not None:
            return text[: stream.cut.pos] + stream.cut.close, True
        return (text if final else self._hold_back(text)), False

    def _hold_back(self, text: str) -> str:
        """Near the limit, send only up to a word or line end, so a later cut can fall on a boundary."""
        if len(text) <= self.limit * 3 // 4:
            return text
        sent = len(self._stream.sent)
        end = max(text.rfind(" ", sent), text.rfind("\n", sent))
        return text[: end + 1] if end >= sent else self._stream.sent

    def _send(self, target: str, *, must_land: bool) -> None:
        stream = self._stream
        delta = target[len(stream.sent) :]
        if stream.ts is None:
            if target.strip():
                response = self.api.call(
                    self.api.client.chat_startStream,
                    must_land=must_land,
                    thread_ts=self.api.thread_ts,
                    markdown_text=target,
                    **self._recipients,
                )
                stream.ts, stream.sent = self.api.posted(str(response["ts"])), target
        elif delta:
            self.api.call(self.api.client.chat_appendStream, must_land=must_land, ts=stream.ts, markdown_text=delta)
            stream.sent = target

    def _stop(self, *, blocks: list[Block] | None, must_land: bool) -> None:
        stream = self._stream
        if stream.ts is None:
            return
        self.api.call(self.api.client.chat_stopStream, must_land=must_land, ts=stream.ts, blocks=blocks)
        stream.done.append(stream.ts)
        stream.ts = None

    def _next_message(self) -> None:
        old = self._stream
        assert old.cut is not None
        start = old.start + old.cut.pos - len(old.prefix)
        self._stream = _Stream(start=start, prefix=old.cut.reopen, done=old.done)

    def _replace(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        """The final text is not a continuation of what was streamed: overwrite the stopped messages."""
        self._stop(blocks=None, must_land=True)
        return self._post_markdown(raw, blocks, existing=self._stream.done)

    def repost(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        return self._post_markdown(raw, blocks, existing=[])

    def _post_markdown(self, raw: str, blocks: list[Block], *, existing: list[str]) -> PostedAnswer:
        """The answer in messages whose markdown block keeps the Markdown rendering a stream has:
        `existing` messages are updated, more are posted, those left over deleted."""
        text = raw if raw.strip() else EMPTY_ANSWER
        parts = split_message(text, self.limit)
        posted = []
        for index, part in enumerate(parts):
            part_blocks = [{"type": "markdown", "text": part}] + (blocks if index == len(parts) - 1 else [])
            if index < len(existing):
                self.api.update(existing[index], part, part_blocks, must_land=True)
                posted.append(existing[index])
            else:
                posted.append(self.api.post(part, part_blocks, must_land=True))
        for ts in existing[len(parts) :]:
            self.api.delete(ts)
        return PostedAnswer(posted[0], posted, text, streamed_natively=True)


class RespondWriter(Writer):
    """A slash command's response_url: nothing shows until the final answer, which is sent once."""

    def __init__(self, respond: Respond, limit: int) -> None:
        self.limit = limit
        self._respond = respond

    def all_ts(self) -> list[str]:
        return []

    def push(self, raw: str) -> None:
        """A response_url takes only a few messages in all; the answer waits for its end."""

    def finish(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        # No feedback blocks: Slack does not say which message a response_url made, so a vote on it
        # could not find its turn.
        text = clip_for_slack(to_mrkdwn(raw) if raw.strip() else EMPTY_ANSWER)
        self._respond(text=text, response_type="in_channel")
        return PostedAnswer(None, [], text, streamed_natively=False)

    def fail(self, message: str) -> None:
        self._respond(text=message, response_type="ephemeral")

    def repost(self, raw: str, blocks: list[Block]) -> PostedAnswer:
        return self.finish(raw, blocks)


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _with_text(text: str, blocks: list[Block]) -> list[Block]:
    """`blocks` after the message's own text: with blocks, Slack shows them instead of `text`."""
    return [section(chunk) for chunk in split_message(text, SECTION_TEXT_LIMIT)] + blocks


def slack_error(exc: Exception) -> str | None:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return None


def retry_after(exc: Exception) -> float:
    """Seconds Slack asked to wait (Retry-After), 1 when it did not say."""
    headers = exc.response.headers if isinstance(exc, SlackApiError) else {}
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0


def describe(exc: Exception) -> str:
    return slack_error(exc) or f"{type(exc).__name__}: {exc}"
