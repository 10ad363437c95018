"""Wires every Slack surface to its listener on a Bolt app."""

from __future__ import annotations

from slack_bolt import App

from handlers.slack.assistant import (
    ASK_ABOUT_SHORTCUT,
    on_app_context_changed,
    on_ask_about_shortcut,
    on_assistant_context_changed,
    on_assistant_thread_started,
)
from handlers.slack.claims import on_listener_error
from handlers.slack.commands import (
    FORGET_CANCEL,
    FORGET_CONFIRM,
    on_ember_command,
    on_forget_cancel,
    on_forget_confirm,
)
from handlers.slack.digest_commands import SUMMARIZE_SHORTCUT, on_digest_vote, on_summarize_shortcut
from handlers.slack.digest_post import DIGEST_DOWN, DIGEST_UP
from handlers.slack.feedback import register_feedback
from handlers.slack.home import (
    EDIT_CALLBACK,
    HOME_CATCH_UP,
    HOME_DIGEST_EDIT,
    HOME_DIGEST_OFF,
    HOME_FORGET,
    on_app_home_opened,
    on_home_catch_up,
    on_home_digest_edit,
    on_home_digest_off,
    on_home_forget,
    on_schedule_submit,
)
from handlers.slack.mentions import on_app_mention
from handlers.slack.messages import on_message

# Every event is acknowledged (Slack retries anything else); of messages, only DMs are answered.
EVENTS = (
    ("app_mention", on_app_mention),
    ("message", on_message),
    ("app_home_opened", on_app_home_opened),
    ("assistant_thread_started", on_assistant_thread_started),
    ("assistant_thread_context_changed", on_assistant_context_changed),
    ("app_context_changed", on_app_context_changed),
)
SHORTCUTS = (
    (SUMMARIZE_SHORTCUT, on_summarize_shortcut),
    (ASK_ABOUT_SHORTCUT, on_ask_about_shortcut),
)
# What a message's menu calls them (the manifest's names).
SHORTCUT_NAMES = {SUMMARIZE_SHORTCUT: "Summarize this thread", ASK_ABOUT_SHORTCUT: "Ask Ember about this"}
# Buttons by action_id: /ember forget's confirmation, votes on digests, the Home tab's.
ACTIONS = (
    (FORGET_CONFIRM, on_forget_confirm),
    (FORGET_CANCEL, on_forget_cancel),
    (DIGEST_UP, on_digest_vote),
    (DIGEST_DOWN, on_digest_vote),
    (HOME_DIGEST_OFF, on_home_digest_off),
    (HOME_DIGEST_EDIT, on_home_digest_edit),
    (HOME_FORGET, on_home_forget),
    (HOME_CATCH_UP, on_home_catch_up),
)
VIEWS = ((EDIT_CALLBACK, on_schedule_submit),)


def register(app: App, *, command: str = "/ember") -> None:
    for event, on_event in EVENTS:
        app.event(event)(on_event)
    app.command(command)(on_ember_command)
    for callback_id, on_shortcut in SHORTCUTS:
        app.shortcut(callback_id)(on_shortcut)
    for action_id, on_action in ACTIONS:
        app.action(action_id)(on_action)
    for callback_id, on_view in VIEWS:
        app.view(callback_id)(on_view)
    # The answers' feedback: buttons, the "better answer" modal and :+1:/:-1: reactions.
    register_feedback(app)
    app.error(on_listener_error)
