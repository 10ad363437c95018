"""Builders for what Slack sends to the bot: Events API envelopes,
slash-command forms and interaction payloads.

They only shape data; storing the underlying messages is the workspace's job.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from .workspace import Channel, Message, Workspace

TEAM_DOMAIN = "ember-test"
DEFAULT_VERIFICATION_TOKEN = "fake-verification-token"
# Fields of a stored message that Slack copies into app_mention events.
_MENTION_FIELDS = ("client_msg_id", "user", "text", "ts", "team", "thread_ts", "parent_user_id", "blocks")
# Unused trigger ids kept for views.open/push; Slack's expire within seconds, so old ones can go.
_TRIGGERS_KEPT = 1000


def new_trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**11}.{uuid.uuid4().hex}"


class EventFactory:
    """Wraps workspace messages into the envelopes Slack POSTs to apps."""

    def __init__(self, ws: Workspace, verification_token: str = DEFAULT_VERIFICATION_TOKEN) -> None:
        self.ws = ws
        self.verification_token = verification_token

    def envelope(self, event: dict[str, Any]) -> dict[str, Any]:
        """An `event_callback` envelope around `event`."""
        ws = self.ws
        return {
            "token": self.verification_token,
            "team_id": ws.team_id,
            "context_team_id": ws.team_id,
            "context_enterprise_id": None,
            "api_app_id": ws.app_id,
            "event": event,
            "type": "event_callback",
            # From the workspace's own counter, which the store keeps: an app that remembers the
            # event ids it took (Ember does) must never see one again after a restart.
            "event_id": ws.new_id("Ev"),
            "event_time": int(float(event["event_ts"])),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": ws.team_id,
                    "user_id": ws.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def trigger(self, user: str) -> str:
        """A fresh trigger_id for an interaction by `user`, which views.open/views.push accept once."""
        trigger_id = new_trigger_id()
        with self.ws.lock:
            triggers = self.ws.triggers
            triggers[trigger_id] = user
            while len(triggers) > _TRIGGERS_KEPT:
                del triggers[next(iter(triggers))]
        return trigger_id

    def _user(self, user: str) -> dict[str, Any]:
        ws = self.ws
        name = ws.users[user].name
        return {"id": user, "username": name, "name": name, "team_id": ws.team_id}

    def app_mention(self, channel: Channel, message: Message) -> dict[str, Any]:
        event = {k: copy.deepcopy(message[k]) for k in _MENTION_FIELDS if k in message}
        event.update(type="app_mention", channel=channel.id, event_ts=message["ts"])
        return self.envelope(event)

    def message(self, channel: Channel, message: Message) -> dict[str, Any]:
        event = copy.deepcopy(message)
        event.update(channel=channel.id, event_ts=message["ts"], channel_type=channel.channel_type)
        return self.envelope(event)

    def message_changed(self, channel: Channel, before: Message, after: Message, ts: str) -> dict[str, Any]:
        event = {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "message": after,
            "previous_message": before,
            "channel": channel.id,
            "channel_type": channel.channel_type,
            "ts": ts,
            "event_ts": ts,
        }
        return self.envelope(event)

    def reaction_added(self, channel: Channel, message: Message, user: str, reaction: str) -> dict[str, Any]:
        return self._reaction("reaction_added", channel, message, user, reaction)

    def reaction_removed(self, channel: Channel, message: Message, user: str, reaction: str) -> dict[str, Any]:
        return self._reaction("reaction_removed", channel, message, user, reaction)

    def _reaction(self, kind: str, channel: Channel, message: Message, user: str, reaction: str) -> dict[str, Any]:
        item = {"type": "message", "channel": channel.id, "ts": message["ts"]}
        event = {"type": kind, "user": user, "reaction": reaction, "item": item}
        if "user" in message:
            event["item_user"] = message["user"]
        event["event_ts"] = self.ws.clock.next()
        return self.envelope(event)

    def block_action(
        self,
        channel: Channel,
        user: str,
        message: Message,
        action: dict[str, Any],
        response_url: str,
        ephemeral: bool = False,
    ) -> dict[str, Any]:
        """A `block_actions` payload for a click on `message` (as send_interaction expects);
        on an `ephemeral` message Slack marks the container so and leaves the message out."""
        ws = self.ws
        container = {"type": "message", "message_ts": message["ts"], "channel_id": channel.id}
        container["is_ephemeral"] = ephemeral
        if message.get("thread_ts"):
            container["thread_ts"] = message["thread_ts"]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": ws.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": self.trigger(user),
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "channel": {"id": channel.id, "name": channel.name},
            "message": copy.deepcopy(message),
            "response_url": response_url,
            "actions": [{"action_ts": ws.clock.next(), **action}],
            "state": {"values": {}},
        }
        if ephemeral:
            del payload["message"]
        return payload

    def app_home_opened(self, user: str, channel: Channel, tab: str = "home") -> dict[str, Any]:
        """`user` opened the app's Home (or Messages) tab; `channel` is their DM with the app. Slack
        includes the home view once one has been published."""
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user,
            "channel": channel.id,
            "tab": tab,
            "event_ts": self.ws.clock.next(),
        }
        home = self.ws.homes.get(user)
        if home is not None and tab == "home":
            event["view"] = copy.deepcopy(home)
        return self.envelope(event)

    def app_context_changed(self, user: str, channel: Channel, viewing: str | None) -> dict[str, Any]:
        """Agent view: `user`, with the app open beside Slack, now looks at channel `viewing` (None:
        at nothing Slack names, and the context is empty)."""
        entities = [{"type": "slack#/types/channel_id", "value": viewing, "team_id": self.ws.team_id}]
        event = {
            "type": "app_context_changed",
            "user": user,
            "channel": channel.id,
            "context": {"entities": entities} if viewing else {},
            "event_ts": self.ws.clock.next(),
        }
        return self.envelope(event)

    def assistant_thread_started(
        self, user: str, dm: Channel, thread_ts: str, context_channel: str | None
    ) -> dict[str, Any]:
        """`user` opened a new thread in Ember's assistant pane, while looking at `context_channel`."""
        return self.envelope(
            {
                "type": "assistant_thread_started",
                "assistant_thread": self._assistant_thread(user, dm, thread_ts, context_channel),
                "event_ts": self.ws.clock.next(),
            }
        )

    def assistant_thread_context_changed(
        self, user: str, dm: Channel, thread_ts: str, context_channel: str | None
    ) -> dict[str, Any]:
        """`user`, with the pane open, moved to another channel."""
        return self.envelope(
            {
                "type": "assistant_thread_context_changed",
                "assistant_thread": self._assistant_thread(user, dm, thread_ts, context_channel),
                "event_ts": self.ws.clock.next(),
            }
        )

    def _assistant_thread(self, user: str, dm: Channel, thread_ts: str, context_channel: str | None) -> dict[str, Any]:
        context: dict[str, Any] = {"team_id": self.ws.team_id, "enterprise_id": None}
        if context_channel is not None:
            context["channel_id"] = context_channel
        return {"user_id": user, "context": context, "channel_id": dm.id, "thread_ts": thread_ts}

    def home_action(self, user: str, action: dict[str, Any]) -> dict[str, Any]:
        """A `block_actions` payload for a click on `user`'s Home tab: a view container, no channel,
        no response_url."""
        ws = self.ws
        home = copy.deepcopy(ws.homes[user])
        return {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": ws.app_id,
            "token": self.verification_token,
            "container": {"type": "view", "view_id": home["id"]},
            "trigger_id": self.trigger(user),
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "view": home,
            "actions": [{"action_ts": ws.clock.next(), **action}],
            "state": {"values": {}},
        }

    def view_submission(self, user: str, view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """A `view_submission` payload: `user` pressed Submit on `view` (as views.open returned it)
        with `values` typed in ({block_id: {action_id: {"type": ..., "value": ...}}})."""
        ws = self.ws
        return {
            "type": "view_submission",
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "user": self._user(user),
            "api_app_id": ws.app_id,
            "token": self.verification_token,
            "trigger_id": self.trigger(user),
            "view": {**copy.deepcopy(view), "state": {"values": copy.deepcopy(values)}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }

    def view_closed(self, user: str, view: dict[str, Any], is_cleared: bool = False) -> dict[str, Any]:
        """A `view_closed` payload, sent for views opened with notify_on_close."""
        ws = self.ws
        return {
            "type": "view_closed",
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "user": self._user(user),
            "api_app_id": ws.app_id,
            "token": self.verification_token,
            "view": copy.deepcopy(view),
            "is_cleared": is_cleared,
            "is_enterprise_install": False,
            "enterprise": None,
        }

    def message_shortcut(
        self, channel: Channel, user: str, message: Message, callback_id: str, response_url: str
    ) -> dict[str, Any]:
        """A `message_action` payload: `user` ran the message shortcut `callback_id` on `message`."""
        ws = self.ws
        return {
            "type": "message_action",
            "token": self.verification_token,
            "action_ts": ws.clock.next(),
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "user": self._user(user),
            "channel": {"id": channel.id, "name": channel.name},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self.trigger(user),
            "response_url": response_url,
            "message_ts": message["ts"],
            "message": copy.deepcopy(message),
        }


def element_action(
    message: Message, action_id: str, value: str | None = None, block_id: str | None = None, positive: bool = True
) -> dict[str, Any] | None:
    """The fields Slack reports in `actions[0]` for a click on the interactive element `action_id`
    of `message`'s blocks (type, action_id, block_id, and text/value/style where it has them);
    None when the message shows no such element.

    A feedback_buttons element reports the half that was clicked: the one whose value is `value`,
    or without a value the positive half (the negative one with positive=False)."""
    for block in message.get("blocks") or []:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        for element in _elements(block):
            if element.get("action_id") != action_id:
                continue
            fields: dict[str, Any] = {"type": element.get("type"), "action_id": action_id}
            fields["block_id"] = block.get("block_id", "")
            if element.get("type") == "feedback_buttons":
                halves = [element.get("positive_button") or {}, element.get("negative_button") or {}]
                if value is None:
                    chosen = halves[0 if positive else 1]
                else:
                    chosen = next((h for h in halves if h.get("value") == value), {})
                if not chosen:
                    return None
                fields.update({k: copy.deepcopy(chosen[k]) for k in ("text", "value") if k in chosen})
                return fields
            fields.update({k: copy.deepcopy(element[k]) for k in ("text", "value", "style") if k in element})
            if value is not None and "value" not in fields:
                fields["value"] = value
            return fields
    return None


def _elements(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Interactive elements of a block: actions/context_actions elements, or a section's accessory."""
    elements = [e for e in block.get("elements") or [] if isinstance(e, dict)]
    accessory = block.get("accessory")
    return [*elements, accessory] if isinstance(accessory, dict) else elements


def command_fields(
    *,
    command: str,
    text: str,
    channel_id: str,
    user_id: str,
    team_id: str,
    response_url: str,
    channel_name: str = "",
    user_name: str = "",
    api_app_id: str = "A0001",
    verification_token: str = DEFAULT_VERIFICATION_TOKEN,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The form fields of a slash-command request, in Slack's order."""
    return {
        "token": verification_token,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }
