"""The shapes of what Slack sends, checked in this one place before Bolt reads a request.

`check(body)` says whether a parsed, signed request is one Slack sends (`OK`), one Ember does not
handle and acknowledges without dispatching (`IGNORE`: an event type it has no listener for, an
interaction it offers no surface for), or neither: then a one-line reason, answered with 400.

Only fields that Bolt or Ember's listeners read are checked, for presence where they index them and
for type wherever they appear; anything else Slack adds passes. Payloads follow Slack's reference:
https://api.slack.com/apis/events-api#callback-field, https://api.slack.com/interactivity/slash-commands,
https://api.slack.com/reference/interaction-payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlparse

OK: Final = "ok"
IGNORE: Final = "ignore"

NoneType = type(None)
STR: Any = str
OPT_STR: Any = (str, NoneType)


@dataclass(frozen=True)
class Required:
    spec: Any


Shape = dict[str, Any]  # field -> spec or Required(spec); a spec is a type, a tuple of types, a Shape, or [spec]

MESSAGE: Shape = {
    "type": STR,
    "subtype": STR,
    "user": STR,
    "bot_id": OPT_STR,
    "app_id": OPT_STR,
    "team": STR,
    "text": STR,
    "ts": STR,
    "thread_ts": STR,
    "parent_user_id": STR,
    "channel": STR,
    "channel_type": STR,
    "event_ts": STR,
    "client_msg_id": STR,
    "blocks": [dict],
    "files": [dict],
}
EVENTS: dict[str, Shape] = {
    "app_mention": {**MESSAGE, "channel": Required(STR), "ts": Required(STR)},
    "message": {
        **MESSAGE,
        "channel": Required(STR),
        "ts": Required(STR),
        "message": MESSAGE,
        "previous_message": MESSAGE,
    },
    "reaction_added": {
        "user": Required(STR),
        "reaction": Required(STR),
        "item_user": STR,
        "item": Required({"type": STR, "channel": Required(STR), "ts": Required(STR)}),
        "event_ts": STR,
    },
}
EVENTS["reaction_removed"] = EVENTS["reaction_added"]
EVENTS["app_home_opened"] = {"user": Required(STR), "channel": STR, "tab": STR, "view": dict, "event_ts": STR}
ASSISTANT_THREAD: Shape = {
    "user_id": Required(STR),
    "channel_id": Required(STR),
    "thread_ts": Required(STR),
    "context": {"channel_id": STR, "team_id": STR, "enterprise_id": OPT_STR},
}
EVENTS["assistant_thread_started"] = {"assistant_thread": Required(ASSISTANT_THREAD), "event_ts": STR}
EVENTS["assistant_thread_context_changed"] = EVENTS["assistant_thread_started"]
EVENTS["app_context_changed"] = {"user": STR, "channel": STR, "context": dict, "event_ts": STR}
AUTHORIZATION: Shape = {
    "enterprise_id": OPT_STR,
    "team_id": OPT_STR,
    "user_id": STR,
    "is_bot": bool,
    "is_enterprise_install": bool,
}
ENVELOPE: Shape = {
    "token": STR,
    "team_id": STR,
    "enterprise_id": OPT_STR,
    "context_team_id": OPT_STR,
    "context_enterprise_id": OPT_STR,
    "api_app_id": STR,
    "event_id": Required(STR),
    "event_time": int,
    "authorizations": [AUTHORIZATION],
    "is_ext_shared_channel": bool,
    "event_context": STR,
}
ID: Shape = {"id": Required(STR)}
OPT_ID: Any = ({"id": STR}, NoneType)
INTERACTION: Shape = {
    "type": Required(STR),
    "user": Required({"id": Required(STR), "team_id": STR, "name": STR, "username": STR}),
    "team": OPT_ID,
    "enterprise": OPT_ID,
    "is_enterprise_install": bool,
    "api_app_id": STR,
    "token": STR,
    "trigger_id": STR,
    "response_url": STR,
    "channel": {"id": STR, "name": STR},
    "container": {
        "type": STR,
        "message_ts": STR,
        "thread_ts": STR,
        "channel_id": STR,
        "view_id": STR,
        "is_ephemeral": bool,
    },
    "message": {**MESSAGE, "metadata": dict},
}
INPUT_VALUE: Any = {"type": STR, "value": OPT_STR}
VIEW: Shape = {
    "id": Required(STR),
    "type": Required(STR),
    "callback_id": STR,
    "private_metadata": STR,
    "hash": STR,
    "root_view_id": OPT_STR,
    "previous_view_id": OPT_STR,
    "blocks": [dict],
    "state": {"values": {"*": {"*": INPUT_VALUE}}},
}
INTERACTIONS: dict[str, Shape] = {
    "block_actions": {
        **INTERACTION,
        "actions": Required([{"action_id": Required(STR), "block_id": STR, "type": STR, "value": STR}]),
        "view": VIEW,
    },
    "view_submission": {**INTERACTION, "view": Required(VIEW), "response_urls": [dict]},
    "view_closed": {**INTERACTION, "view": Required(VIEW), "is_cleared": bool},
    "message_action": {
        **INTERACTION,
        "callback_id": Required(STR),
        "channel": Required({"id": Required(STR), "name": STR}),
        "message": Required({**MESSAGE, "ts": Required(STR)}),
        "message_ts": STR,
    },
    "shortcut": {**INTERACTION, "callback_id": Required(STR)},
}
# Slack sends every slash command with a response_url: where Ember may not post, it answers there.
COMMAND_FIELDS = ("command", "user_id", "channel_id", "team_id", "response_url")


def check(body: Any) -> str:
    """OK, IGNORE, or why this is not a request Slack sends: one line naming fields, not their values."""
    if not isinstance(body, Mapping):
        return "the request body is not an object"
    if "command" in body or "ssl_check" in body:
        return _command(body)
    kind = body.get("type")
    if not isinstance(kind, str):
        return "the request has no type: not an event, a command or an interaction"
    if kind == "event_callback":
        return _event(body)
    if kind == "url_verification":
        return _fields(body, {"challenge": Required(STR), "token": STR}, "")
    if kind == "app_rate_limited":
        return OK
    if kind in INTERACTIONS:
        verdict = _fields(body, INTERACTIONS[kind], "")
        if verdict == OK and kind == "block_actions" and not body["actions"]:
            return "actions is empty"
        if verdict == OK and "response_url" in body and not _is_url(body["response_url"]):
            return "response_url must be an http(s) URL"
        return verdict
    if kind in ("block_suggestion", "interactive_message", "dialog_submission", "workflow_step_edit"):
        return IGNORE  # Slack sends these, but Ember offers nothing that would
    return f"unknown request type {kind[:40]!r}"


def _command(body: Mapping[str, Any]) -> str:
    if "ssl_check" in body:
        return OK
    missing = [name for name in COMMAND_FIELDS if not isinstance(body.get(name), str) or not body[name]]
    if missing:
        return f"a slash command without {', '.join(missing)}"
    if not _is_url(body["response_url"]):
        return "response_url must be an http(s) URL"
    return OK


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _event(body: Mapping[str, Any]) -> str:
    verdict = _fields(body, ENVELOPE, "")
    if verdict != OK:
        return verdict
    event = body.get("event")
    if not isinstance(event, Mapping):
        return "event must be an object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "event.type must be a string"
    if kind not in EVENTS:
        return IGNORE
    return _fields(event, EVENTS[kind], "event.")


def _fields(node: Mapping[str, Any], shape: Shape, where: str) -> str:
    for name, spec in shape.items():
        required = isinstance(spec, Required)
        if required:
            spec = spec.spec
        if name == "*":
            for key, value in node.items():
                verdict = _value(value, spec, f"{where}{key}")
                if verdict != OK:
                    return verdict
            continue
        if name not in node:
            if required:
                return f"{where}{name} is missing"
            continue
        verdict = _value(node[name], spec, f"{where}{name}")
        if verdict != OK:
            return verdict
    return OK


def _value(value: Any, spec: Any, where: str) -> str:
    if isinstance(spec, dict):
        if not isinstance(value, Mapping):
            return f"{where} must be an object, not {_kind(value)}"
        return _fields(value, spec, f"{where}.")
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where} must be a list, not {_kind(value)}"
        for index, item in enumerate(value):
            verdict = _value(item, spec[0], f"{where}[{index}]")
            if verdict != OK:
                return verdict
        return OK
    if isinstance(spec, tuple) and any(isinstance(option, dict) for option in spec):
        errors = [_value(value, option, where) for option in spec]
        return OK if OK in errors else errors[0]
    types = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(value, bool) and bool not in types:
        return f"{where} must be {_names(types)}, not a boolean"
    if not isinstance(value, types):
        return f"{where} must be {_names(types)}, not {_kind(value)}"
    return OK


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(_NAMES.get(t, t.__name__) for t in types)


def _kind(value: Any) -> str:
    return "null" if value is None else _NAMES.get(type(value), type(value).__name__)


_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean", dict: "an object", list: "a list"}
_NAMES[NoneType] = "null"
