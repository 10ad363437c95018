"""Running a digest: claim the window, read it from Slack, summarise it, post it, record how it went.

A channel digest reads only its own channel and is posted there. A personal recap reads each channel
its recipient and Ember are both members of, summarises each channel on its own (no prompt ever holds
two channels' talk) and goes to the recipient by DM. db.visibility decides what each may hold.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db import Database
from db.digests import CHANNEL, FAILED, POSTED, QUIET, Subscription, claim_run, finish_run
from db.visibility import channel_digest_holds, dm_digest_holds
from handlers.qa.digest import Digest, Summariser
from handlers.slack.digest_collect import Collected, Names, collect_channel, collect_thread
from handlers.slack.digest_post import ChannelPart, headline, headline_blocks, thread_parts
from models.base import LLM

log = logging.getLogger(__name__)

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class Outcome:
    """What a run did: posted (with where), quiet, failed, or taken (another process has the window)."""

    status: str
    channel_id: str | None = None
    message_ts: str | None = None
    messages: int = 0


TAKEN = Outcome("taken")


class DigestRunner:
    def __init__(
        self,
        *,
        db: Database,
        engine: LLM,
        client: WebClient,
        max_messages: int = 5000,
        quiet: str = "skip",
        default_timezone: str = "UTC",
        timeout: float | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.summariser = Summariser(engine, timeout=timeout)
        self.max_messages = max_messages
        self.quiet = quiet
        self.default_timezone = default_timezone
        # Who holds a claim, so a claim of a process that died can be told from a live one.
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._workspace_url: str | None = None
        self._bot_user_id: str | None = None

    # -- scheduled and on-demand digests -----------------------------------------------------

    def run_window(self, subscription: Subscription, window: Window) -> Outcome:
        """Post one window of a subscription, unless it is posted already (or being posted elsewhere)."""
        with self.db.session() as session:
            run_id = claim_run(
                session,
                subscription_id=subscription.id,
                workspace_id=subscription.workspace_id,
                window_start=window[0],
                window_end=window[1],
                owner=self.owner,
            )
        if run_id is None:
            log.info("digest %d for %s is posted already", subscription.id, window[0])
            return TAKEN
        local = _local(window, subscription.timezone)
        if subscription.kind == CHANNEL:
            channel = subscription.channel_id
            return self._run(run_id, local, lambda w: [self._channel_part(channel, w, posted_in=channel)], channel)
        return self._run(
            run_id, local, lambda w: self._recap_parts(subscription.user_id, w), None, subscription.user_id
        )

    def catch_up(
        self, *, workspace_id: str, channel_id: str, channel_type: str, user_id: str, window: Window, timezone: str
    ) -> Outcome:
        """`/ember digest now`: one channel's window, to the asker alone by DM."""
        if not dm_digest_holds(
            channel_type=channel_type, recipient_is_member=self.is_member(channel_id, user_id), recap=False
        ):
            return Outcome("refused")
        with self.db.session() as session:
            run_id = claim_run(
                session,
                subscription_id=None,
                workspace_id=workspace_id,
                window_start=window[0],
                window_end=window[1],
                owner=self.owner,
            )
        assert run_id is not None  # on-demand runs have no subscription, so they never collide
        local = _local(window, timezone)
        return self._run(run_id, local, lambda w: [self._part(channel_id, w)], None, user_id, quiet="note")

    def summarize_thread(self, channel_id: str, thread_ts: str) -> tuple[Collected, Digest]:
        collected = collect_thread(self.client, channel_id, thread_ts, max_messages=self.max_messages)
        return collected, self.summariser.summarise(collected.units)

    def thread_text(self, collected: Collected, digest: Digest) -> str:
        """One thread's summary as one message (the parts joined; a thread summary is short)."""
        part = ChannelPart(collected.channel_id, "", digest, collected.messages, collected.threads, collected.truncated)
        body = "\n".join(thread_parts([part], self._url(), max_messages=self.max_messages))
        count = f"{collected.messages} message{'s' * (collected.messages != 1)}"
        return f"*Summary of this thread* ({count})\n{body}"

    # -- the steps ----------------------------------------------------------------------------

    def _run(
        self,
        run_id: int,
        window: Window,
        parts_of: Callable[[Window], list[ChannelPart]],
        channel_id: str | None,
        recipient: str | None = None,
        *,
        quiet: str | None = None,
    ) -> Outcome:
        try:
            parts = parts_of(window)
            destination = channel_id or self._dm(recipient or "")
            outcome = self._deliver(
                run_id, window, parts, destination, title=self._title(parts, channel_id), quiet=quiet or self.quiet
            )
        except Exception as exc:
            log.exception("digest run %d failed", run_id)
            with self.db.session() as session:
                finish_run(session, run_id=run_id, status=FAILED, detail={"error": f"{type(exc).__name__}: {exc}"})
            return Outcome(FAILED)
        with self.db.session() as session:
            finish_run(
                session,
                run_id=run_id,
                status=outcome.status,
                messages=outcome.messages,
                channel_id=outcome.channel_id,
                message_ts=outcome.message_ts,
                detail=_detail(parts),
            )
        return outcome

    def _channel_part(self, channel_id: str, window: Window, *, posted_in: str) -> ChannelPart:
        if not channel_digest_holds(channel_id=channel_id, posted_in=posted_in):
            raise PermissionError(f"a digest posted in {posted_in} cannot hold {channel_id}")
        return self._part(channel_id, window)

    def _recap_parts(self, user_id: str, window: Window) -> list[ChannelPart]:
        parts = []
        for channel in self._bot_channels():
            channel_id = str(channel["id"])
            channel_type = "group" if channel.get("is_private") else "channel"
            member = self.is_member(channel_id, user_id)
            if dm_digest_holds(channel_type=channel_type, recipient_is_member=member, recap=True):
                parts.append(self._part(channel_id, window, name=str(channel.get("name") or channel_id)))
        return parts

    def _part(self, channel_id: str, window: Window, *, name: str | None = None) -> ChannelPart:
        name = name or self._name(channel_id)
        collected = collect_channel(
            self.client,
            channel_id,
            oldest=window[0],
            latest=window[1],
            max_messages=self.max_messages,
            names=Names(self.client),
        )
        log.info("digest of #%s: %d messages in %d threads", name, collected.messages, collected.threads)
        # A week of a busy channel takes minutes on a CPU: the log says how far it got.
        digest = self.summariser.summarise(
            collected.units, title=f"#{name}", progress=lambda step: log.info("digest of #%s: %s", name, step)
        )
        return ChannelPart(channel_id, name, digest, collected.messages, collected.threads, collected.truncated)

    def _bot_channels(self) -> list[dict[str, object]]:
        """The channels Ember is a member of (users.conversations with its own token)."""
        channels: list[dict[str, object]] = []
        cursor: str | None = None
        while True:
            page = self.client.users_conversations(
                types="public_channel,private_channel", exclude_archived=True, limit=200, cursor=cursor
            )
            channels.extend(page.get("channels") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return channels

    def is_member(self, channel_id: str, user_id: str) -> bool:
        """conversations.members, page by page; False where Ember cannot see the channel at all."""
        cursor: str | None = None
        while True:
            try:
                page = self.client.conversations_members(channel=channel_id, limit=200, cursor=cursor)
            except SlackApiError:
                return False
            if user_id in (page.get("members") or []):
                return True
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return False

    def _deliver(
        self, run_id: int, window: Window, parts: list[ChannelPart], destination: str, *, title: str, quiet: str
    ) -> Outcome:
        messages = sum(part.messages for part in parts)
        if all(part.digest.empty and not part.truncated for part in parts) and messages == 0:
            if quiet != "note":
                return Outcome(QUIET)
            posted = self.client.chat_postMessage(
                channel=destination, text=f"{title}: a quiet window, nothing to sum up."
            )
            return Outcome(QUIET, destination, posted.get("ts"))
        text = headline(title, window, parts)
        posted = self.client.chat_postMessage(channel=destination, text=text, blocks=headline_blocks(text, run_id))
        ts = str(posted["ts"])
        for part_text in thread_parts(parts, self._url(), max_messages=self.max_messages):
            self.client.chat_postMessage(channel=destination, thread_ts=ts, text=part_text, unfurl_links=False)
        return Outcome(POSTED, destination, ts, messages)

    def _title(self, parts: list[ChannelPart], channel_id: str | None) -> str:
        if channel_id is not None and len(parts) == 1:
            return f"#{parts[0].channel_name}"
        if len(parts) == 1:
            return f"Catch-up of #{parts[0].channel_name}"
        return f"Your recap of {len(parts)} channel{'s' * (len(parts) != 1)}"

    def _name(self, channel_id: str) -> str:
        try:
            info = self.client.conversations_info(channel=channel_id).get("channel") or {}
        except SlackApiError:
            return channel_id
        return str(info.get("name") or channel_id)

    def _dm(self, user_id: str) -> str:
        opened = self.client.conversations_open(users=user_id)
        return str((opened.get("channel") or {})["id"])

    def _url(self) -> str:
        """The workspace's URL (auth.test), the base of every permalink."""
        if self._workspace_url is None:
            self._workspace_url = str(self.client.auth_test().get("url") or "")
        return self._workspace_url


def _local(window: Window, timezone: str) -> Window:
    zone = ZoneInfo(timezone)
    return window[0].astimezone(zone), window[1].astimezone(zone)


def _detail(parts: list[ChannelPart]) -> dict[str, object]:
    digests = [part.digest for part in parts]
    return {
        "channels": [part.channel_id for part in parts],
        "prompts": sum(d.prompts for d in digests),
        "prompt_tokens": sum(d.prompt_tokens for d in digests),
        "completion_tokens": sum(d.completion_tokens for d in digests),
        "invented_refs": sum(d.invented_refs for d in digests),
        "truncated": any(part.truncated for part in parts),
    }
