"""Builders for what Slack sends to the bot: Events API envelopes,
slash-command forms and interaction payloads.

They only shape data; storing the underlying messages is the workspace's job.
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from typing import Any

from .workspace import Channel, Message, Workspace

TEAM_DOMAIN = "ember-test"
DEFAULT_VERIFICATION_TOKEN = "fake-verification-token"
# Fields of a stored message that Slack copies into app_mention events.
_MENTION_FIELDS = ("client_msg_id", "user", "text", "ts", "team", "thread_ts", "parent_user_id", "blocks")


def new_trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**11}.{uuid.uuid4().hex}"


class EventFactory:
    """Wraps workspace messages into the envelopes Slack POSTs to apps."""

    def __init__(self, ws: Workspace, verification_token: str = DEFAULT_VERIFICATION_TOKEN) -> None:
        self.ws = ws
        self.verification_token = verification_token
        self._ids = itertools.count(1)

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
            "event_id": f"Ev{next(self._ids):08d}",
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
        item = {"type": "message", "channel": channel.id, "ts": message["ts"]}
        event = {"type": "reaction_added", "user": user, "reaction": reaction, "item": item}
        if "user" in message:
            event["item_user"] = message["user"]
        event["event_ts"] = self.ws.clock.next()
        return self.envelope(event)

    def block_action(
        self, channel: Channel, user: str, message: Message, action: dict[str, Any], response_url: str
    ) -> dict[str, Any]:
        """A `block_actions` payload for a click on `message` (as send_interaction expects)."""
        ws = self.ws
        container = {"type": "message", "message_ts": message["ts"], "channel_id": channel.id, "is_ephemeral": False}
        if "thread_ts" in message:
            container["thread_ts"] = message["thread_ts"]
        return {
            "type": "block_actions",
            "user": {"id": user, "username": ws.users[user].name, "name": ws.users[user].name, "team_id": ws.team_id},
            "api_app_id": ws.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": new_trigger_id(),
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "channel": {"id": channel.id, "name": channel.name},
            "message": copy.deepcopy(message),
            "response_url": response_url,
            "actions": [{"action_ts": ws.clock.next(), **action}],
            "state": {"values": {}},
        }

    def message_shortcut(
        self, channel: Channel, user: str, message: Message, callback_id: str, response_url: str
    ) -> dict[str, Any]:
        """A `message_action` payload: `user` ran the message shortcut `callback_id` on `message`."""
        ws = self.ws
        name = ws.users[user].name
        return {
            "type": "message_action",
            "token": self.verification_token,
            "action_ts": ws.clock.next(),
            "team": {"id": ws.team_id, "domain": TEAM_DOMAIN},
            "user": {"id": user, "username": name, "name": name, "team_id": ws.team_id},
            "channel": {"id": channel.id, "name": channel.name},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": new_trigger_id(),
            "response_url": response_url,
            "message_ts": message["ts"],
            "message": copy.deepcopy(message),
        }


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
