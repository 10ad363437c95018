"""In-memory state of the fake Slack workspace.

Everything the Web API handlers and the test helpers read or change lives
here, behind one re-entrant lock, so the HTTP server's threads and the test
thread always see a consistent workspace.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, Any]
ChannelKind = Literal["public", "private", "im", "mpim"]

# Slack's id prefixes: public channels C, private channels and (legacy) group
# DMs G, direct messages D.
_ID_PREFIX: dict[str, str] = {"public": "C", "private": "G", "im": "D", "mpim": "G"}
# The `channel_type` Slack puts on message events for each kind.
CHANNEL_TYPE: dict[str, str] = {"public": "channel", "private": "group", "im": "im", "mpim": "mpim"}
_THREAD_SUMMARY_KEYS = ("reply_count", "reply_users", "reply_users_count", "latest_reply")


def ts_key(ts: str) -> int:
    """Order Slack timestamps exactly ("1700000000.000100" -> microseconds)."""
    seconds, _, fraction = str(ts).partition(".")
    return int(seconds or 0) * 1_000_000 + int((fraction + "000000")[:6])


def format_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


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


@dataclass
class Channel:
    id: str
    name: str
    kind: ChannelKind
    created: int
    user: str | None = None  # the other party of an IM

    @property
    def channel_type(self) -> str:
        return CHANNEL_TYPE[self.kind]

    def info(self) -> dict[str, Any]:
        """The `channel` object of conversations.info."""
        info: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "is_channel": self.kind == "public",
            "is_group": self.kind == "private",
            "is_private": self.kind != "public",
            "is_im": self.kind == "im",
            "is_mpim": self.kind == "mpim",
            "is_archived": False,
            "is_member": True,
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
            "profile": profile,
        }


@dataclass
class ResponseUrl:
    """A minted response_url and the channel message it has produced, if any."""

    channel: str
    user: str | None
    message_ts: str | None = None


@dataclass
class Workspace:
    team_id: str
    bot_user_id: str
    bot_id: str
    bot_token: str
    app_id: str = "A0001"
    team_name: str = "Ember Test"
    bot_name: str = "ember"
    lock: threading.RLock = field(default_factory=threading.RLock)
    clock: TsClock = field(default_factory=TsClock)
    channels: dict[str, Channel] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user id
    ephemerals: list[Message] = field(default_factory=list)
    response_urls: dict[str, ResponseUrl] = field(default_factory=dict)
    streaming: set[tuple[str, str]] = field(default_factory=set)  # (channel, ts)
    _messages: dict[str, list[Message]] = field(default_factory=dict, init=False, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens[self.bot_token] = self.bot_user_id
        bot = User(self.bot_user_id, self.bot_name, "Ember", is_bot=True, bot_id=self.bot_id)
        self.users[bot.id] = bot

    # -- directory -------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def add_channel(self, name: str, kind: ChannelKind = "public", user: str | None = None) -> Channel:
        if kind not in _ID_PREFIX:
            raise ValueError(f"unknown channel kind {kind!r}; use one of {sorted(_ID_PREFIX)}")
        with self.lock:
            channel = Channel(self.new_id(_ID_PREFIX[kind]), name, kind, int(time.time()), user)
            self.channels[channel.id] = channel
            self._messages[channel.id] = []
            return channel

    def add_user(self, name: str, real_name: str | None = None, is_bot: bool = False) -> User:
        with self.lock:
            user = User(self.new_id("U"), name, real_name or name.title(), is_bot=is_bot)
            self.users[user.id] = user
            return user

    def channel(self, ref: str | None) -> Channel | None:
        """Resolve an id, a name or a "#name", as chat.postMessage accepts."""
        if not ref:
            return None
        with self.lock:
            if ref in self.channels:
                return self.channels[ref]
            name = ref.removeprefix("#")
            return next((c for c in self.channels.values() if c.name == name), None)

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

    # -- messages --------------------------------------------------------

    def post(self, channel: str, fields: Message, thread_ts: str | None = None) -> Message:
        """Store a new message and return the stored (live) dict."""
        with self.lock:
            message: Message = {"type": "message", **fields, "ts": self.clock.next(), "team": self.team_id}
            if thread_ts:
                message["thread_ts"] = self.thread_root(channel, thread_ts)
            self._messages[channel].append(message)
            self._link_reply(channel, message)
            return message

    def find(self, channel: str, ts: str | None) -> Message | None:
        with self.lock:
            return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def thread_root(self, channel: str, ts: str) -> str:
        """Slack files a reply to a reply under the thread's parent."""
        found = self.find(channel, ts)
        return str(found.get("thread_ts", ts)) if found else ts

    def all_messages(self, channel: str) -> list[Message]:
        with self.lock:
            return list(self._messages.get(channel, []))

    def top_level(self, channel: str) -> list[Message]:
        """What conversations.history shows: no replies unless broadcast."""
        return [m for m in self.all_messages(channel) if _is_top_level(m)]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """Parent (if stored) and replies, oldest first."""
        root = self.thread_root(channel, ts)
        return [m for m in self.all_messages(channel) if m["ts"] == root or m.get("thread_ts") == root]

    def edit(self, channel: str, ts: str, changes: Message) -> tuple[Message, Message]:
        """Apply `changes` to a stored message; return (before, after) copies."""
        with self.lock:
            message = self.find(channel, ts)
            if message is None:
                raise KeyError(ts)
            before = copy.deepcopy(message)
            message.update(changes)
            return before, copy.deepcopy(message)

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
                return
            self._messages[channel].remove(message)
            if message.get("thread_ts") not in (None, ts):
                self._refresh_thread(channel, message["thread_ts"])

    def _link_reply(self, channel: str, message: Message) -> None:
        root_ts = message.get("thread_ts")
        if root_ts is None or root_ts == message["ts"]:
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
        replies = [m for m in self.thread(channel, root_ts) if m["ts"] != root_ts]
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
