"""In-memory state of the fake Slack workspace.

Everything the Web API handlers and the test helpers read or change lives
here, behind one re-entrant lock, so the HTTP server's threads and the test
thread always see a consistent workspace.
"""

from __future__ import annotations

import bisect
import copy
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Message = dict[str, Any]
ChannelKind = Literal["public", "private", "im", "mpim"]

# Slack's id prefixes: public channels C, private channels and (legacy) group
# DMs G, direct messages D.
_ID_PREFIX: dict[str, str] = {"public": "C", "private": "G", "im": "D", "mpim": "G"}
# The `channel_type` Slack puts on message events for each kind.
CHANNEL_TYPE: dict[str, str] = {"public": "channel", "private": "group", "im": "im", "mpim": "mpim"}
_THREAD_SUMMARY_KEYS = ("reply_count", "reply_users", "reply_users_count", "latest_reply")
# Slack shows a zone's long name; zoneinfo only knows abbreviations, so the common ones are spelled out.
_TZ_LABELS: dict[str, str] = {
    "UTC": "Coordinated Universal Time",
    "GMT": "Greenwich Mean Time",
    "BST": "British Summer Time",
    "WET": "Western European Time",
    "WEST": "Western European Summer Time",
    "CET": "Central European Time",
    "CEST": "Central European Summer Time",
    "EET": "Eastern European Time",
    "EEST": "Eastern European Summer Time",
    "EST": "Eastern Standard Time",
    "EDT": "Eastern Daylight Time",
    "CST": "Central Standard Time",
    "CDT": "Central Daylight Time",
    "MST": "Mountain Standard Time",
    "MDT": "Mountain Daylight Time",
    "PST": "Pacific Standard Time",
    "PDT": "Pacific Daylight Time",
    "JST": "Japan Standard Time",
    "AEST": "Australian Eastern Standard Time",
    "AEDT": "Australian Eastern Daylight Time",
}


def ts_key(ts: str) -> int:
    """Order Slack timestamps exactly ("1700000000.000100" -> microseconds)."""
    seconds, _, fraction = str(ts).partition(".")
    return int(seconds or 0) * 1_000_000 + int((fraction + "000000")[:6])


def format_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _order(message: Message) -> int:
    return ts_key(message["ts"])


class TsClock:
    """Mints wall-clock based, strictly increasing message timestamps."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            # Real time keeps ts plausible for code that checks message age;
            # the +1 keeps them unique when calls land in the same microsecond.
            self._last = max(time.time_ns() // 1000, self._last + 1)
            return format_ts(self._last)

    @property
    def last(self) -> int:
        """The newest ts minted so far, in microseconds (0 before the first)."""
        with self._lock:
            return self._last

    def advance(self, micros: int) -> None:
        """Never mint a ts at or before `micros` again (after restoring stored history)."""
        with self._lock:
            self._last = max(self._last, micros)


@dataclass
class Channel:
    id: str
    name: str
    kind: ChannelKind
    created: int
    user: str | None = None  # the other party of an IM
    members: set[str] = field(default_factory=set)
    archived: bool = False

    @property
    def channel_type(self) -> str:
        return CHANNEL_TYPE[self.kind]

    def visible_to(self, user: str) -> bool:
        """Slack shows anyone a public channel, and any other conversation only to its members."""
        return self.kind == "public" or user in self.members

    def info(self, viewer: str) -> dict[str, Any]:
        """The `channel` object of conversations.info, as `viewer` (the token's user) sees it."""
        info: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "is_channel": self.kind == "public",
            "is_group": self.kind == "private",
            "is_private": self.kind != "public",
            "is_im": self.kind == "im",
            "is_mpim": self.kind == "mpim",
            "is_archived": self.archived,
            "is_member": viewer in self.members,
        }
        if self.user is not None:
            info["user"] = self.user
        return info


@dataclass
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False
    bot_id: str | None = None
    tz: str = "UTC"

    def info(self, team_id: str) -> dict[str, Any]:
        """The `user` object of users.info."""
        profile: dict[str, Any] = {"real_name": self.real_name, "display_name": self.name}
        if self.bot_id:
            profile["bot_id"] = self.bot_id
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": False,
            "is_bot": self.is_bot,
            **_zone_fields(self.tz),
            "profile": profile,
        }


def _zone_fields(tz: str) -> dict[str, Any]:
    """users.info's tz, tz_label and tz_offset (seconds east of UTC, as of now)."""
    now = datetime.now(ZoneInfo(tz))
    offset = now.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    abbreviation = now.tzname() or ""
    return {"tz": tz, "tz_label": _TZ_LABELS.get(abbreviation, abbreviation), "tz_offset": seconds}


@dataclass
class ResponseUrl:
    """A minted response_url and the channel message it has produced, if any."""

    channel: str
    user: str | None
    message_ts: str | None = None
    ephemeral_ts: str | None = None  # set when minted for a click on an ephemeral, which it may replace


@dataclass
class _History:
    """One conversation's messages: ordered by ts, and indexed so lookups stay fast in long channels."""

    ordered: list[Message] = field(default_factory=list)
    by_ts: dict[str, Message] = field(default_factory=dict)
    replies: dict[str, list[Message]] = field(default_factory=dict)  # thread root ts -> replies, oldest first

    def add(self, message: Message) -> None:
        bisect.insort(self.ordered, message, key=_order)
        self.by_ts[message["ts"]] = message
        root = _reply_root(message)
        if root is not None:
            bisect.insort(self.replies.setdefault(root, []), message, key=_order)

    def remove(self, message: Message) -> None:
        _remove(self.ordered, message)
        del self.by_ts[message["ts"]]
        root = _reply_root(message)
        if root is not None:
            _remove(self.replies[root], message)
            if not self.replies[root]:
                del self.replies[root]


def _reply_root(message: Message) -> str | None:
    """The thread a reply belongs to; None for a top-level message or a parent."""
    root = message.get("thread_ts")
    return None if root is None or root == message["ts"] else str(root)


def _remove(messages: list[Message], message: Message) -> None:
    index = bisect.bisect_left(messages, _order(message), key=_order)
    while messages[index] is not message:
        index += 1
    del messages[index]


def thread_key(channel: str, thread_ts: str) -> str:
    """How a thread's assistant state (prompts, title, status) is filed: "DM|thread_ts" of its root."""
    return f"{channel}|{thread_ts}"


@dataclass
class Workspace:
    team_id: str
    bot_user_id: str
    bot_id: str
    bot_token: str
    app_id: str = "A0001"
    team_name: str = "Ember Test"
    # Where people open the workspace (the playground's page); auth.test's url and permalinks point
    # there. Unset, they point at the Web API server itself.
    web_url: str | None = None
    bot_name: str = "ember"
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: TsClock = field(default_factory=TsClock)
    channels: dict[str, Channel] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user id
    ephemerals: list[Message] = field(default_factory=list)
    response_urls: dict[str, ResponseUrl] = field(default_factory=dict)
    streaming: set[tuple[str, str]] = field(default_factory=set)  # (channel, ts)
    # Open modals: user id -> their view stack, root first (views.open/push/update, playground.methods.views).
    views: dict[str, list[Message]] = field(default_factory=dict)
    # Each user's App Home tab as the app last published it (views.publish).
    homes: dict[str, Message] = field(default_factory=dict)
    # Suggested prompts the app set (assistant.threads.setSuggestedPrompts): by DM, or "DM|thread_ts".
    prompts: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # An assistant thread's title (setTitle) and status (setStatus, cleared when the app replies there),
    # by thread_key(DM, thread_ts).
    titles: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, str] = field(default_factory=dict)  # unused trigger_id -> the user it was minted for
    # Bumped on every change, so a page (or the store) can wait for one instead of polling contents.
    revision: int = field(default=0, init=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _history: dict[str, _History] = field(default_factory=dict, init=False, repr=False)
    _next_id: int = field(default=1, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens[self.bot_token] = self.bot_user_id
        bot = User(self.bot_user_id, self.bot_name, "Ember", is_bot=True, bot_id=self.bot_id)
        self.users[bot.id] = bot

    # -- change notification ---------------------------------------------

    def touch(self) -> None:
        """Record that something changed; wakes everyone in `wait_for_change`."""
        with self._changed:
            self.revision += 1
            self._changed.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """Block until `revision` moves past `seen` or `timeout` seconds pass; the revision now."""
        with self._changed:
            self._changed.wait_for(lambda: self.revision != seen, timeout=timeout)
            return self.revision

    # -- directory -------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        with self.lock:
            number, self._next_id = self._next_id, self._next_id + 1
        return f"{prefix}{number:08d}"

    @property
    def next_id_number(self) -> int:
        """The number `new_id` hands out next (the store saves it)."""
        with self.lock:
            return self._next_id

    def reserve_ids(self, next_number: int) -> None:
        """Make `new_id` start at `next_number` or later, so new ids never collide with restored ones."""
        with self.lock:
            self._next_id = max(self._next_id, next_number)

    def add_channel(
        self,
        name: str,
        kind: ChannelKind = "public",
        user: str | None = None,
        members: Iterable[str] = (),
        bot_member: bool = True,
    ) -> Channel:
        """Create a conversation with `members`; the bot is in it unless `bot_member` is False,
        and an IM always holds exactly the bot and `user`."""
        if kind not in _ID_PREFIX:
            raise ValueError(f"unknown channel kind {kind!r}; use one of {sorted(_ID_PREFIX)}")
        with self.lock:
            joined = {self.require_user(m).id for m in members}
            if kind == "im":
                joined = {self.bot_user_id, *([self.require_user(user).id] if user else [])}
            elif bot_member:
                joined.add(self.bot_user_id)
            channel = Channel(self.new_id(_ID_PREFIX[kind]), name, kind, int(time.time()), user, joined)
            self.channels[channel.id] = channel
            self._history[channel.id] = _History()
        self.touch()
        return channel

    def add_user(self, name: str, real_name: str | None = None, is_bot: bool = False, tz: str = "UTC") -> User:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin'") from None
        with self.lock:
            user = User(self.new_id("U"), name, real_name or name.title(), is_bot=is_bot, tz=tz)
            self.users[user.id] = user
        self.touch()
        return user

    def join(self, channel: str, user: str) -> None:
        with self.lock:
            self.require_channel(channel).members.add(self.require_user(user).id)
        self.touch()

    def leave(self, channel: str, user: str) -> None:
        with self.lock:
            ch = self.require_channel(channel)
            if ch.kind == "im":
                raise ValueError("nobody leaves an IM on Slack")
            ch.members.discard(user)
        self.touch()

    def channel(self, ref: str | None) -> Channel | None:
        """Resolve an id, a name or a "#name", as chat.postMessage accepts."""
        if not ref:
            return None
        with self.lock:
            if ref in self.channels:
                return self.channels[ref]
            name = ref.removeprefix("#")
            return next((c for c in self.channels.values() if c.name == name), None)

    def dm_of(self, user: str) -> Channel | None:
        """The app's IM with `user`, if one is open."""
        with self.lock:
            return next((c for c in self.channels.values() if c.kind == "im" and c.user == user), None)

    def require_channel(self, ref: str) -> Channel:
        """Like `channel` but for test helpers, where a bad id is a test bug."""
        channel = self.channel(ref)
        if channel is None:
            raise ValueError(f"no channel {ref!r}; known: {sorted(self.channels)}")
        return channel

    def require_user(self, user_id: str) -> User:
        if user_id not in self.users:
            raise ValueError(f"no user {user_id!r}; known: {sorted(self.users)}")
        return self.users[user_id]

    def bot_author(self) -> Message:
        """Author fields of a message the Ember bot posts."""
        return {"user": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id}

    # -- restoring a saved workspace (playground.store) --------------------

    def restore_channel(self, channel: Channel) -> None:
        """Put back a stored conversation (id, members and all), with an empty history."""
        with self.lock:
            if channel.id in self.channels:
                raise ValueError(f"channel {channel.id} already exists")
            self.channels[channel.id] = channel
            self._history[channel.id] = _History()

    def restore(self, channel: str, message: Message) -> None:
        """Put back a stored message as it was saved: its ts, thread fields and reactions
        are kept (not re-minted or recomputed); later posts get newer ts."""
        with self.lock:
            history = self._history[channel]
            if message["ts"] in history.by_ts:
                raise ValueError(f"message {message['ts']} already exists in {channel}")
            history.add(message)
            self.clock.advance(ts_key(message["ts"]))

    # -- messages --------------------------------------------------------

    def post(self, channel: str, fields: Message, thread_ts: str | None = None, at: float | None = None) -> Message:
        """Store a new message and return the stored (live) dict.

        Its ts is minted now, or taken from epoch time `at` for back-dated history;
        either way it is unique in the channel, which stays ordered by ts."""
        with self.lock:
            history = self._history[channel]
            if at is None:
                ts = self.clock.next()
                while ts in history.by_ts:
                    ts = self.clock.next()
            else:
                micros = round(at * 1_000_000)
                while format_ts(micros) in history.by_ts:
                    micros += 1
                ts = format_ts(micros)
            message: Message = {"type": "message", **fields, "ts": ts, "team": self.team_id}
            if thread_ts:
                message["thread_ts"] = self.thread_root(channel, thread_ts)
                if fields.get("bot_id") == self.bot_id:  # Slack clears the status when the app replies
                    self.statuses.pop(thread_key(channel, message["thread_ts"]), None)
            history.add(message)
            self._link_reply(channel, message)
            if ts in history.replies:  # a parent stored after its replies (seeded out of order)
                for reply in history.replies[ts]:
                    if "user" in message:
                        reply["parent_user_id"] = message["user"]
                self._refresh_thread(channel, ts)
        self.touch()
        return message

    def find(self, channel: str, ts: str | None) -> Message | None:
        with self.lock:
            history = self._history.get(channel)
            return history.by_ts.get(str(ts)) if history is not None else None

    def thread_root(self, channel: str, ts: str) -> str:
        """Slack files a reply to a reply under the thread's parent."""
        found = self.find(channel, ts)
        return str(found.get("thread_ts", ts)) if found else ts

    def all_messages(self, channel: str) -> list[Message]:
        with self.lock:
            history = self._history.get(channel)
            return list(history.ordered) if history is not None else []

    def top_level(self, channel: str) -> list[Message]:
        """What conversations.history shows: no replies unless broadcast."""
        return [m for m in self.all_messages(channel) if _is_top_level(m)]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """Parent (if stored) first, then the replies oldest first."""
        with self.lock:
            root = self.thread_root(channel, ts)
            history = self._history[channel]
            parent = history.by_ts.get(root)
            return ([parent] if parent is not None else []) + list(history.replies.get(root, []))

    def add_reaction(self, message: Message, user: str, name: str) -> bool:
        """Add `user`'s reaction :name: to a stored message; False if they had already added it."""
        with self.lock:
            reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
            name = name.strip(":")
            entry = next((r for r in reactions if r["name"] == name), None)
            if entry is None:
                entry = {"name": name, "users": [], "count": 0}
                reactions.append(entry)
            if user in entry["users"]:
                return False
            entry["users"].append(user)
            entry["count"] = len(entry["users"])
        self.touch()
        return True

    def edit(self, channel: str, ts: str, changes: Message) -> tuple[Message, Message]:
        """Apply `changes` to a stored message; return (before, after) copies."""
        with self.lock:
            message = self.find(channel, ts)
            if message is None:
                raise KeyError(ts)
            before = copy.deepcopy(message)
            message.update(changes)
            after = copy.deepcopy(message)
        self.touch()
        return before, after

    def delete(self, channel: str, ts: str) -> None:
        """Remove a message; a parent with replies leaves a tombstone like Slack."""
        with self.lock:
            message = self.find(channel, ts)
            if message is None:
                raise KeyError(ts)
            if message.get("reply_count"):
                message.clear()
                message.update(_tombstone(ts, self.team_id))
                self._refresh_thread(channel, ts)
            else:
                self._history[channel].remove(message)
                root = _reply_root(message)
                if root is not None:
                    self._refresh_thread(channel, root)
        self.touch()

    def _link_reply(self, channel: str, message: Message) -> None:
        root_ts = _reply_root(message)
        if root_ts is None:
            return
        root = self.find(channel, root_ts)
        if root is not None and "user" in root:
            message["parent_user_id"] = root["user"]
        self._refresh_thread(channel, root_ts)

    def _refresh_thread(self, channel: str, root_ts: str) -> None:
        """Recompute the parent's reply summary, as Slack shows it."""
        root = self.find(channel, root_ts)
        if root is None:
            return
        replies = self._history[channel].replies.get(root_ts, [])
        for key in _THREAD_SUMMARY_KEYS:
            root.pop(key, None)
        if not replies:
            return
        users = list(dict.fromkeys(r["user"] for r in replies if "user" in r))
        root.update(
            thread_ts=root_ts,
            reply_count=len(replies),
            reply_users=users,
            reply_users_count=len(users),
            latest_reply=replies[-1]["ts"],
        )


def _is_top_level(message: Message) -> bool:
    thread_ts = message.get("thread_ts")
    return thread_ts is None or thread_ts == message["ts"] or bool(message.get("reply_broadcast"))


def _tombstone(ts: str, team_id: str) -> Message:
    return {
        "type": "message",
        "subtype": "tombstone",
        "text": "This message was deleted.",
        "user": "USLACKBOT",
        "hidden": True,
        "ts": ts,
        "thread_ts": ts,
        "team": team_id,
    }
