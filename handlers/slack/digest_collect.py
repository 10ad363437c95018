"""Reading a window of a channel for a digest: conversations.history and conversations.replies, cursor by
cursor, threads included whose replies fall in the window even when their parent is older.

Left out: bots' messages (Ember's own among them), messages someone marked :no_entry_sign:, and joins,
topic changes and other system messages. Rate limits are slack_sdk's business: the client Ember builds
retries a 429 after its Retry-After (bot.app).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers.qa.digest import SourceMessage, Unit

# Parents this much older than the window are still looked at for replies inside it. Slack has no
# "threads active since" query, so history is read this far back for parents only.
THREAD_LOOKBACK = timedelta(days=14)
PAGE = 200
# Top-level messages without replies are summarised in runs: split where talk paused or ran long.
RUN_GAP_SECONDS = 3600
RUN_MAX = 40
KEEP_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}
EXCLUDED_REACTION = "no_entry_sign"
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass
class Collected:
    """What a window of one channel holds, ready for the summariser."""

    channel_id: str
    units: list[Unit] = field(default_factory=list)
    messages: int = 0  # messages inside the window that the digest reads
    threads: int = 0  # threads with replies inside the window
    left_out: int = 0  # bots, :no_entry_sign:, system messages
    truncated: bool = False  # the cap was hit: older messages of the window were not read

    @property
    def quiet(self) -> bool:
        return self.messages == 0


class Names:
    """Display names for user ids, asked of users.info once each."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._names: dict[str, str] = {}

    def of(self, user_id: str) -> str:
        if user_id not in self._names:
            self._names[user_id] = self._lookup(user_id)
        return self._names[user_id]

    def _lookup(self, user_id: str) -> str:
        try:
            user = self.client.users_info(user=user_id).get("user") or {}
        except SlackApiError:
            return user_id
        profile = user.get("profile") or {}
        return str(profile.get("display_name") or user.get("real_name") or user.get("name") or user_id)

    def readable(self, text: str) -> str:
        """<@U123> becomes @alice, so the model reads names rather than ids."""
        return _MENTION.sub(lambda match: "@" + self.of(match.group(1)), text)


def collect_channel(
    client: WebClient,
    channel_id: str,
    *,
    oldest: datetime,
    latest: datetime,
    max_messages: int,
    names: Names | None = None,
) -> Collected:
    names = names or Names(client)
    start, end = oldest.timestamp(), latest.timestamp()
    found = Collected(channel_id)
    loose: list[dict[str, Any]] = []
    threads: list[dict[str, Any]] = []
    for message in _history(client, channel_id, oldest=start - THREAD_LOOKBACK.total_seconds(), latest=end):
        ts = float(message["ts"])
        if int(message.get("reply_count") or 0) > 0 and float(message.get("latest_reply") or 0) >= start:
            threads.append(message)
        elif start <= ts < end and not _is_reply(message):
            loose.append(message)
        if len(loose) >= max_messages:
            found.truncated = True
            break
    kept_loose = _keep(loose, found)
    budget = max_messages - len(kept_loose)
    units: list[tuple[float, Unit]] = []
    for parent in threads:
        if budget <= 0:
            found.truncated = True
            break
        replies = [m for m in _replies(client, channel_id, parent["ts"], start, end) if m["ts"] != parent["ts"]]
        kept = _keep([r for r in replies if start <= float(r["ts"]) < end], found)
        parent_kept = _keep([parent], found, count=False)
        in_window = start <= float(parent["ts"]) < end and bool(parent_kept)
        if len(kept) + in_window > budget:
            kept = kept[len(kept) + in_window - budget :]
            found.truncated = True
        if not kept and not in_window:
            continue
        budget -= len(kept) + in_window
        found.messages += len(kept) + in_window
        found.threads += 1 if kept else 0
        thread = [*parent_kept, *sorted(kept, key=lambda m: float(m["ts"]))]
        units.append((float(parent["ts"]), Unit(tuple(_source(m, names, parent["ts"]) for m in thread))))
    found.messages += len(kept_loose)
    for run in _runs(sorted(kept_loose, key=lambda m: float(m["ts"]))):
        units.append((float(run[0]["ts"]), Unit(tuple(_source(m, names, None) for m in run))))
    found.units = [unit for _, unit in sorted(units, key=lambda pair: pair[0])]
    return found


def collect_thread(client: WebClient, channel_id: str, thread_ts: str, *, max_messages: int) -> Collected:
    """A whole thread, for "Summarize this thread"."""
    names = Names(client)
    found = Collected(channel_id)
    messages = _keep(list(_replies(client, channel_id, thread_ts, None, None)), found)
    if len(messages) > max_messages:
        messages, found.truncated = messages[-max_messages:], True
    found.messages = len(messages)
    found.threads = 1 if len(messages) > 1 else 0
    root = messages[0].get("thread_ts", thread_ts) if messages else thread_ts
    if messages:
        found.units = [Unit(tuple(_source(m, names, root) for m in messages))]
    return found


def _history(client: WebClient, channel_id: str, *, oldest: float, latest: float) -> Iterator[dict[str, Any]]:
    """Top-level messages newest first, page by page."""
    cursor: str | None = None
    while True:
        page = client.conversations_history(
            channel=channel_id, oldest=f"{oldest:.6f}", latest=f"{latest:.6f}", limit=PAGE, cursor=cursor
        )
        yield from page.get("messages") or []
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            return


def _replies(
    client: WebClient, channel_id: str, ts: str, start: float | None, end: float | None
) -> Iterator[dict[str, Any]]:
    """The parent, then its replies (within the window when one is given), page by page."""
    cursor: str | None = None
    windowed = start is not None and end is not None
    # The parent comes back whatever the bounds; `inclusive` keeps a reply at exactly `start`.
    oldest = f"{start:.6f}" if windowed and start is not None else None
    latest = f"{end:.6f}" if windowed and end is not None else None
    while True:
        page = client.conversations_replies(
            channel=channel_id, ts=ts, limit=PAGE, cursor=cursor, oldest=oldest, latest=latest, inclusive=windowed
        )
        yield from page.get("messages") or []
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            return


def _keep(messages: list[dict[str, Any]], found: Collected, *, count: bool = True) -> list[dict[str, Any]]:
    kept = [m for m in messages if _wanted(m)]
    if count:
        found.left_out += len(messages) - len(kept)
    return kept


def _wanted(message: dict[str, Any]) -> bool:
    if message.get("bot_id") or message.get("subtype") not in KEEP_SUBTYPES or not message.get("user"):
        return False
    reactions = message.get("reactions") or []
    return not any(r.get("name", "").split("::")[0] == EXCLUDED_REACTION for r in reactions)


def _is_reply(message: dict[str, Any]) -> bool:
    thread_ts = message.get("thread_ts")
    return thread_ts is not None and thread_ts != message["ts"] and message.get("subtype") != "thread_broadcast"


def _runs(messages: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    run: list[dict[str, Any]] = []
    for message in messages:
        if run and (float(message["ts"]) - float(run[-1]["ts"]) > RUN_GAP_SECONDS or len(run) >= RUN_MAX):
            yield run
            run = []
        run.append(message)
    if run:
        yield run


def _source(message: dict[str, Any], names: Names, thread_ts: str | None) -> SourceMessage:
    return SourceMessage(
        ts=str(message["ts"]),
        author=names.of(str(message["user"])),
        text=names.readable(str(message.get("text") or "")),
        thread_ts=thread_ts,
    )
