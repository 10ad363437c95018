"""The Slack app manifest declares what the code listens to: an event Ember handles but the manifest
does not subscribe to never arrives, and a shortcut missing from it never shows in Slack's menus.

The events Ember handles are the ones handlers.slack.envelopes knows (any other is acked and dropped
before Bolt); each must have a listener on the real Bolt app, and be subscribed in the manifest with
the scope Slack requires for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from slack_bolt import App, BoltRequest, BoltResponse

from handlers.slack.assistant import ASK_ABOUT_SHORTCUT
from handlers.slack.digest_commands import SUMMARIZE_SHORTCUT
from handlers.slack.envelopes import EVENTS
from handlers.slack.wiring import SHORTCUT_NAMES, register

MANIFEST = Path(__file__).resolve().parents[2] / "slack-app-manifest.yaml"
# The manifest's name for an event Ember handles, and the bot scope Slack requires to receive it.
SUBSCRIPTION = {
    "app_mention": ("app_mention", "app_mentions:read"),
    "message": ("message.im", "im:history"),  # DMs are questions; channel messages come as mentions
    "reaction_added": ("reaction_added", "reactions:read"),
    "reaction_removed": ("reaction_removed", "reactions:read"),
    "app_home_opened": ("app_home_opened", None),
    "app_context_changed": ("app_context_changed", "assistant:write"),
    # Only for apps made before the agent view, which keep assistant_view: the manifest is for new ones.
    "assistant_thread_started": (None, "assistant:write"),
    "assistant_thread_context_changed": (None, "assistant:write"),
}


def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load(MANIFEST.read_text()))


def bolt_app() -> App:
    app = App(
        token="xoxb-test", signing_secret="x", token_verification_enabled=False, request_verification_enabled=False
    )
    register(app)
    return app


def listens_to(app: App, body: dict[str, Any]) -> bool:
    request = BoltRequest(body=body, mode="socket_mode")
    return any(listener.matches(req=request, resp=BoltResponse(status=200)) for listener in app._listeners)


def event_body(kind: str) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "user": "U1", "channel": "D1", "ts": "1.1", "event_ts": "1.1"}
    if kind == "message":
        event["channel_type"] = "im"
    return {"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": event}


def test_every_event_ember_handles_has_a_listener_and_a_subscription_with_its_scope() -> None:
    app, declared = bolt_app(), manifest()
    events = set(declared["settings"]["event_subscriptions"]["bot_events"])
    scopes = set(declared["oauth_config"]["scopes"]["bot"])
    assert set(EVENTS) == set(SUBSCRIPTION), "a new event needs its manifest subscription listed here"
    for kind in EVENTS:
        assert listens_to(app, event_body(kind)), f"no listener for {kind}"
        name, scope = SUBSCRIPTION[kind]
        assert name is None or name in events, f"{name} is handled but the manifest does not subscribe to it"
        assert scope is None or scope in scopes, f"{name} needs the {scope} scope"
    assert not listens_to(app, event_body("team_join")), "an event the manifest does not list"


def test_the_home_tab_the_assistant_pane_the_command_and_the_shortcut_are_declared() -> None:
    app, declared = bolt_app(), manifest()
    features = declared["features"]
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True, "DMs are how people ask"
    assert "assistant_view" not in features, "new apps can no longer use assistant_view"
    agent = features["agent_view"]
    assert agent["agent_description"] and 1 <= len(agent["suggested_prompts"]) <= 4
    assert all(set(prompt) == {"title", "message"} for prompt in agent["suggested_prompts"])
    assert [c["command"] for c in features["slash_commands"]] == ["/ember"]
    shortcuts = {s["callback_id"]: s["type"] for s in features["shortcuts"]}
    assert shortcuts == {SUMMARIZE_SHORTCUT: "message", ASK_ABOUT_SHORTCUT: "message"}
    assert {s["callback_id"]: s["name"] for s in features["shortcuts"]} == SHORTCUT_NAMES, "the playground's menu"
    for callback_id in shortcuts:
        body = {"type": "message_action", "callback_id": callback_id, "user": {"id": "U1"}, "team": {"id": "T1"}}
        assert listens_to(app, body), f"no listener for the {callback_id} shortcut"
    interactivity = declared["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True, "buttons, modals and shortcuts need interactivity"
    assert {"chat:write", "commands", "im:write"} <= set(declared["oauth_config"]["scopes"]["bot"])
