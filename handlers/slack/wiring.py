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


def register(app: App, *, command: str = "/ember") -> None:
    app.event("app_mention")(on_app_mention)
    # Every message event is acknowledged (Slack retries anything else); only DMs are answered.
    app.event("message")(on_message)
    app.command(command)(on_ember_command)
    app.action(FORGET_CONFIRM)(on_forget_confirm)
    app.action(FORGET_CANCEL)(on_forget_cancel)
    app.shortcut(SUMMARIZE_SHORTCUT)(on_summarize_shortcut)
    app.shortcut(ASK_ABOUT_SHORTCUT)(on_ask_about_shortcut)
    app.action(DIGEST_UP)(on_digest_vote)
    app.action(DIGEST_DOWN)(on_digest_vote)
    # Buttons, the "better answer" modal and :+1:/:-1: reactions on answers.
    register_feedback(app)
    app.event("app_home_opened")(on_app_home_opened)
    app.event("assistant_thread_started")(on_assistant_thread_started)
    app.event("assistant_thread_context_changed")(on_assistant_context_changed)
    app.event("app_context_changed")(on_app_context_changed)
    app.action(HOME_DIGEST_OFF)(on_home_digest_off)
    app.action(HOME_DIGEST_EDIT)(on_home_digest_edit)
    app.view(EDIT_CALLBACK)(on_schedule_submit)
    app.action(HOME_FORGET)(on_home_forget)
    app.action(HOME_CATCH_UP)(on_home_catch_up)
    app.error(on_listener_error)
