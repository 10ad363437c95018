"""`LocalSlack`: the object tests hold. It owns the workspace, the HTTP server
speaking the Web API, the call log and fault plan, and builds the events a
human (or another bot) would cause.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from . import response_urls
from .calls import ApiCall, CallLog, Fault, FaultPlan, Predicate
from .dispatch import Dispatcher
from .events import DEFAULT_VERIFICATION_TOKEN, EventFactory, command_fields
from .socket_mode import CONNECT_METHOD, SocketMode
from .transport import BackgroundServer
from .workspace import Channel, ChannelKind, Message, Workspace

Envelope = dict[str, Any]


class LocalSlack:
    """A local, Slack-compatible Web API plus helpers to act as Slack's users."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        verification_token: str = DEFAULT_VERIFICATION_TOKEN,
        app_token: str = "xapp-1-A0001-1-playground",
    ) -> None:
        self.workspace = Workspace(team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, bot_token=bot_token)
        self._log = CallLog()
        self._faults = FaultPlan()
        self._dispatcher = Dispatcher(self.workspace, self._log, self._faults)
        # Socket Mode: apps.connections.open (with `app_token`) hands out URLs of this WebSocket server.
        self.socket_mode = SocketMode(self.workspace, {app_token})
        self._dispatcher.app_level[CONNECT_METHOD] = self.socket_mode.connections_open
        self._dispatcher.app_tokens = self.socket_mode.app_tokens
        self._events = EventFactory(self.workspace, verification_token)
        self._server: BackgroundServer | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> LocalSlack:
        if self._server is not None:
            raise RuntimeError("LocalSlack is already running")
        self._server = BackgroundServer(self._dispatcher)
        self._dispatcher.base_url = f"http://127.0.0.1:{self._server.port}"
        self._server.start()
        self.socket_mode.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.socket_mode.stop()
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalSlack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._dispatcher.base_url:
            raise RuntimeError("LocalSlack is not started; call start() first")
        return self._dispatcher.base_url

    @property
    def api_url(self) -> str:
        # slack_sdk appends the method name straight after base_url.
        return f"{self.base_url}/api/"

    # -- workspace -------------------------------------------------------

    @property
    def bot_token(self) -> str:
        return self.workspace.bot_token

    @property
    def events(self) -> EventFactory:
        """The builder of the envelopes and payloads Slack sends (e.g. `events.view_submission`)."""
        return self._events

    @property
    def app_token(self) -> str:
        """The app-level token (xapp-...) that apps.connections.open accepts."""
        return next(iter(self.socket_mode.app_tokens))

    def add_channel(
        self,
        name: str,
        kind: ChannelKind = "public",
        user: str | None = None,
        members: Iterable[str] = (),
        bot_member: bool = True,
    ) -> str:
        """Create a conversation holding `members` and, unless `bot_member` is False, the bot;
        `user` is the other party of an IM, whose members are always the bot and `user`."""
        return self.workspace.add_channel(name, kind, user, members, bot_member).id

    def add_user(self, name: str, real_name: str | None = None, is_bot: bool = False, tz: str = "UTC") -> str:
        """A member of the workspace; `tz` is the IANA zone users.info reports."""
        return self.workspace.add_user(name, real_name, is_bot, tz).id

    def join(self, channel: str, user: str) -> None:
        """Make `user` (the bot's id included) a member of `channel`; no event is sent."""
        self.workspace.join(channel, user)

    def leave(self, channel: str, user: str) -> None:
        self.workspace.leave(channel, user)

    def archive(self, channel: str) -> None:
        """Archive a channel: users.conversations' exclude_archived skips it and posting fails."""
        with self.workspace.lock:
            self.workspace.require_channel(channel).archived = True

    def add_token(self, token: str, user_id: str) -> None:
        """Accept another token (e.g. a user token) acting as `user_id`."""
        self.workspace.require_user(user_id)
        self.workspace.tokens[token] = user_id

    def messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """Stored messages oldest first: all of the channel's (replies included),
        or with `thread_ts` the thread's parent and replies."""
        ws = self.workspace
        channel_id = ws.require_channel(channel).id
        with ws.lock:
            found = ws.thread(channel_id, thread_ts) if thread_ts else ws.all_messages(channel_id)
            return copy.deepcopy(found)

    def message(self, channel: str, ts: str) -> Message | None:
        with self.workspace.lock:
            return copy.deepcopy(self.workspace.find(self.workspace.require_channel(channel).id, ts))

    def ephemerals(self, channel: str | None = None) -> list[Message]:
        """Ephemeral messages shown so far (chat.postEphemeral and response_url)."""
        with self.workspace.lock:
            return [copy.deepcopy(e) for e in self.workspace.ephemerals if channel in (None, e["channel"])]

    # -- recording and faults -------------------------------------------

    @property
    def calls(self) -> list[ApiCall]:
        return self._log.all()

    def calls_to(self, method: str) -> list[ApiCall]:
        return self._log.matching(method)

    def clear_calls(self) -> None:
        self._log.clear()

    def wait_for(
        self, method: str, predicate: Predicate | None = None, timeout: float = 30.0, count: int = 1
    ) -> list[ApiCall]:
        """Block until `count` matching calls are recorded; returns every match so far."""
        return self._log.wait_for(method, predicate, timeout, count)

    def fail_next(
        self, method: str, error: str = "ratelimited", status: int = 429, retry_after: int | None = 1, times: int = 1
    ) -> None:
        """Answer the next `times` calls of `method` (or "response_url") with an error; `status=0`
        drops the connection unanswered instead. Faults queue up per method, in the order added."""
        self._faults.add(method, Fault(error, status, retry_after), times)

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of crashes inside the fake (answered as HTTP 500), and Socket Mode protocol errors."""
        return list(self._dispatcher.errors) + list(self.socket_mode.errors)

    # -- what humans and other bots do ----------------------------------

    def mention(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> Envelope:
        """Store "<@BOT> text" from `user`; return its app_mention envelope."""
        # A bare mention is just "<@BOT>", without a trailing space.
        mention_text = f"<@{self.workspace.bot_user_id}> {text}".rstrip(" ")
        ch, message = self._post_as_human(channel, user, mention_text, thread_ts)
        return self._events.app_mention(ch, message)

    def user_message(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> Envelope:
        ch, message = self._post_as_human(channel, user, text, thread_ts)
        return self._events.message(ch, message)

    def bot_message(self, channel: str, text: str, bot_id: str = "BOTHER", thread_ts: str | None = None) -> Envelope:
        """A message from another (legacy) bot integration."""
        ch = self.workspace.require_channel(channel)
        fields = {"subtype": "bot_message", "bot_id": bot_id, "username": "otherbot", "text": text}
        message = self.workspace.post(ch.id, fields, thread_ts)
        return self._events.message(ch, message)

    def edited_message(self, channel: str, ts: str, text: str) -> Envelope:
        """Edit a stored message; return the message_changed envelope."""
        ws = self.workspace
        ch = ws.require_channel(channel)
        with ws.lock:
            original = ws.find(ch.id, ts)
            if original is None:
                raise ValueError(f"no message {ts!r} in {ch.id}")
            edit_ts = ws.clock.next()
            edited = {"user": original.get("user", original.get("bot_id")), "ts": edit_ts}
            before, after = ws.edit(ch.id, ts, {"text": text, "edited": edited})
        return self._events.message_changed(ch, before, after, edit_ts)

    def seed(
        self,
        channel: str,
        user: str,
        text: str,
        at: float,
        thread_ts: str | None = None,
        reactions: Sequence[str] = (),
        bot: bool = False,
    ) -> str:
        """Store a message from `user` as if posted at epoch time `at`, and return its ts.

        For building days of history quickly: no event is sent, the ts stays unique
        and the channel stays ordered whatever order messages are seeded in. A reply
        updates its parent's thread summary; `reactions` are added by `user`;
        `bot=True` stores it as the Ember bot's own message instead."""
        ws = self.workspace
        ch = ws.require_channel(channel)
        ws.require_user(user)
        fields = {**ws.bot_author(), "text": text} if bot else _human_fields(user, text)
        with ws.lock:
            message = ws.post(ch.id, fields, thread_ts, at=at)
            for name in reactions:
                ws.add_reaction(message, user, name)
            return str(message["ts"])

    def react(self, channel: str, ts: str, user: str, name: str) -> Envelope:
        """Add `user`'s reaction :name: to a stored message, as reactions.add stores it;
        return the reaction_added envelope Slack would send."""
        ws = self.workspace
        ch = ws.require_channel(channel)
        ws.require_user(user)
        with ws.lock:
            message = ws.find(ch.id, ts)
            if message is None:
                raise ValueError(f"no message {ts!r} in {ch.id}")
            if not ws.add_reaction(message, user, name):
                raise ValueError(f"{user} already reacted :{name.strip(':')}: to {ts}")
            return self._events.reaction_added(ch, message, user, name.strip(":"))

    def _post_as_human(self, channel: str, user: str, text: str, thread_ts: str | None) -> tuple[Channel, Message]:
        ch = self.workspace.require_channel(channel)
        self.workspace.require_user(user)
        return ch, self.workspace.post(ch.id, _human_fields(user, text), thread_ts)

    # -- slash commands and interactions --------------------------------

    def response_url(self, channel_id: str, user_id: str | None = None) -> str:
        """Mint a response_url bound to a channel (and the invoking user)."""
        channel = self.workspace.require_channel(channel_id).id
        return response_urls.mint(self.workspace, self.base_url, channel, user_id)

    def command_payload(self, channel: str, user: str, text: str = "", command: str = "/ember") -> dict[str, str]:
        """Slash-command form fields with a fresh response_url; send with SlackClient.send_form."""
        ws = self.workspace
        ch, who = ws.require_channel(channel), ws.require_user(user)
        return command_fields(
            command=command,
            text=text,
            channel_id=ch.id,
            user_id=who.id,
            team_id=ws.team_id,
            response_url=self.response_url(ch.id, who.id),
            channel_name=ch.name,
            user_name=who.name,
            api_app_id=ws.app_id,
            verification_token=self._events.verification_token,
            trigger_id=self._events.trigger(who.id),
        )

    def block_action(
        self, channel: str, user: str, message_ts: str, action_id: str, value: str | None = None, block_id: str = "b1"
    ) -> dict[str, Any]:
        """A button-click `block_actions` payload; send with SlackClient.send_interaction."""
        ws = self.workspace
        ch = ws.require_channel(channel)
        ws.require_user(user)
        message = self.message(ch.id, message_ts)
        if message is None:
            raise ValueError(f"no message {message_ts!r} in {ch.id}")
        action: dict[str, Any] = {"type": "button", "action_id": action_id, "block_id": block_id}
        if value is not None:
            action["value"] = value
        return self._events.block_action(ch, user, message, action, self.response_url(ch.id, user))

    def app_home_opened(self, user: str, tab: str = "home") -> Envelope:
        """`user` opens Ember's Home tab (or, `tab="messages"`, its messages tab, where the agent view
        lives): the app_home_opened envelope Slack would send."""
        return self._events.app_home_opened(user, self._dm(user), tab)

    def app_context_changed(self, user: str, viewing: str | None) -> Envelope:
        """Agent view: `user` now looks at channel `viewing` with Ember open beside it."""
        return self._events.app_context_changed(user, self._dm(user), viewing)

    def assistant_thread_started(self, user: str, context_channel: str | None = None) -> tuple[Envelope, str, str]:
        """`user` opens a new thread in Ember's assistant pane (while viewing `context_channel`):
        Slack starts the thread in their DM with the app. Returns the envelope, the DM and the thread's ts."""
        dm = self._dm(user)
        root = self.workspace.post(
            dm.id, {"user": self.workspace.bot_user_id, "bot_id": self.workspace.bot_id, "text": ""}
        )
        envelope = self._events.assistant_thread_started(user, dm, root["ts"], context_channel)
        return envelope, dm.id, root["ts"]

    def assistant_context_changed(self, user: str, dm: str, thread_ts: str, context_channel: str | None) -> Envelope:
        return self._events.assistant_thread_context_changed(
            user, self.workspace.require_channel(dm), thread_ts, context_channel
        )

    def _dm(self, user: str) -> Channel:
        ws = self.workspace
        ws.require_user(user)
        with ws.lock:
            return ws.dm_of(user) or ws.add_channel(user, kind="im", user=user)

    def home(self, user: str) -> dict[str, Any] | None:
        """`user`'s Home tab as Ember last published it (views.publish), or None."""
        with self.workspace.lock:
            return self.workspace.homes.get(user)

    def home_action(self, user: str, action_id: str, value: str | None = None) -> dict[str, Any]:
        """A click on the button `action_id` (with `value`, if several share it) on `user`'s Home tab."""
        home = self.home(user)
        if home is None:
            raise ValueError(f"no home tab published for {user}")
        for block in home["blocks"]:
            for element in [block.get("accessory"), *(block.get("elements") or [])]:
                if not isinstance(element, dict) or element.get("action_id") != action_id:
                    continue
                if value is None or element.get("value") == value:
                    action = {"type": element.get("type"), "block_id": block.get("block_id", ""), **element}
                    return self._events.home_action(user, action)
        raise ValueError(f"no {action_id} control{f' with value {value}' if value else ''} on {user}'s home tab")

    def message_shortcut(self, channel: str, user: str, message_ts: str, callback_id: str) -> dict[str, Any]:
        """A message-shortcut (`message_action`) payload for `user` running `callback_id`
        on a stored message; send with SlackClient.send_interaction."""
        ws = self.workspace
        ch = ws.require_channel(channel)
        ws.require_user(user)
        message = self.message(ch.id, message_ts)
        if message is None:
            raise ValueError(f"no message {message_ts!r} in {ch.id}")
        return self._events.message_shortcut(ch, user, message, callback_id, self.response_url(ch.id, user))


def _human_fields(user: str, text: str) -> Message:
    """What Slack stores for a person's message (clients stamp a client_msg_id)."""
    return {"user": user, "text": text, "client_msg_id": str(uuid.uuid4())}
