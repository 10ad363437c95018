"""Ember in Slack's AI surfaces: the agent view (new apps since mid-2026: the messages tab, with
`app_context_changed` saying what the person is looking at) and the older assistant pane (threads in
the person's DM with Ember, each opened beside a channel). Both get the same suggested prompts.

- Agent view: opening the messages tab (`app_home_opened`, tab "messages") and every
  `app_context_changed` suggest prompts for the DM; the channel being viewed is kept in db.assistant.

- `assistant_thread_started`: the thread is recorded (db.assistant, with the channel the person is
  looking at) and gets up to four suggested prompts: "Catch me up on #channel" when both Ember and
  the person can read that channel, then the questions the team asked most this week among those the
  person may see (public channels and their own DM), then defaults.
- `assistant_thread_context_changed`: the person moved to another channel with the pane open.
- The first question of a conversation becomes its title: a top-level DM message (which opens its
  own thread, the agent view's model) or the first question in a pane thread. Questions are answered
  by the DM path (handlers.slack.messages), which shows "is thinking…" and the agent's tool steps as
  the status.
- "Catch me up on #channel" runs the digest pipeline on demand, as `/ember digest now` does.
- The message shortcut "Ask Ember about this" starts such a thread in the person's DM with the
  message quoted at its top, so the questions asked in it are answered with that message as context.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db.assistant import (
    popular_questions,
    set_context,
    set_viewing,
    take_title,
    thread_started,
    viewing,
)
from db.digests import FAILED
from db.visibility import Audience, dm_digest_holds
from handlers.slack.answering import settle, settle_failed
from handlers.slack.asks import SlackAsk
from handlers.slack.services import CONTEXT_KEY, Services

log = logging.getLogger(__name__)

PROMPTS_LIMIT = 4  # Slack shows at most four
PROMPT_TITLE_LIMIT = 40
TITLE_LIMIT = 60
POPULAR_SINCE = timedelta(days=7)
DEFAULT_PROMPTS = (
    {"title": "What can you help with?", "message": "What can you help me with?"},
    {"title": "Summarize a thread", "message": "How do I get a summary of a long thread?"},
    {"title": "Teach you a fact", "message": "How do I correct one of your answers?"},
    {"title": "Daily digest", "message": "How do I get a daily digest of a channel?"},
)
CATCH_UP = re.compile(r"^\s*catch me up on <#([CG][A-Z0-9]+)(?:\|[^>]*)?>", re.IGNORECASE)
CATCH_UP_SENT = "I've read <#{channel}> for the last day; the catch-up is in our DM."
CATCH_UP_REFUSED = "Sorry, I can't catch you up on that channel: one of us can't read it."
CATCH_UP_UNAVAILABLE = "Sorry, catch-ups are not available here."
CATCH_UP_FAILED = "Sorry, the catch-up failed. Please try again in a moment."
ASK_ABOUT_SHORTCUT = "ember_ask_about"
QUOTE_LIMIT = 2_000


def on_assistant_thread_started(
    event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    services: Services = context[CONTEXT_KEY]
    thread = event["assistant_thread"]
    user, dm, ts = thread["user_id"], thread["channel_id"], thread["thread_ts"]
    workspace = str(body.get("team_id") or context.team_id or "")
    looking_at = (thread.get("context") or {}).get("channel_id")
    with services.db.session() as session:
        thread_started(
            session, workspace_id=workspace, channel_id=dm, thread_ts=ts, user_id=user, context_channel_id=looking_at
        )
    suggest(services, client, workspace_id=workspace, user_id=user, dm=dm, thread_ts=ts, looking_at=looking_at)


def on_messages_tab_opened(services: Services, client: WebClient, *, workspace_id: str, user_id: str, dm: str) -> None:
    """Agent view: the person opened Ember's messages tab; the prompts sit at the top of the DM."""
    with services.db.session() as session:
        looking_at = viewing(session, workspace_id=workspace_id, user_id=user_id)
    suggest(services, client, workspace_id=workspace_id, user_id=user_id, dm=dm, thread_ts=None, looking_at=looking_at)


def on_app_context_changed(
    event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """Agent view: the person, with Ember open, now looks at something else; the prompts follow."""
    services: Services = context[CONTEXT_KEY]
    user = event.get("user") or _person(body)
    if not user:
        return
    workspace = str(body.get("team_id") or context.team_id or "")
    looking_at = viewed_channel(event.get("context") or {})
    with services.db.session() as session:
        set_viewing(session, workspace_id=workspace, user_id=user, channel_id=looking_at)
    try:
        dm = str(event.get("channel") or client.conversations_open(users=user)["channel"]["id"])
    except SlackApiError as exc:
        log.warning("could not open the DM of %s: %s", user, exc.response.get("error"))
        return
    suggest(services, client, workspace_id=workspace, user_id=user, dm=dm, thread_ts=None, looking_at=looking_at)


def viewed_channel(app_context: dict[str, Any]) -> str | None:
    """The channel in Slack's app context (its entities come most relevant first), if any."""
    for entity in app_context.get("entities") or []:
        if not isinstance(entity, dict):
            continue
        value = entity.get("value")
        if entity.get("type") == "slack#/types/channel_id" and isinstance(value, str):
            return value
        if entity.get("type") == "slack#/types/message_context" and isinstance(value, dict):
            channel = value.get("channel_id")
            return channel if isinstance(channel, str) else None
    return None


def suggest(
    services: Services,
    client: WebClient,
    *,
    workspace_id: str,
    user_id: str,
    dm: str,
    thread_ts: str | None,
    looking_at: str | None,
) -> None:
    prompts = suggested_prompts(
        services, client, workspace_id=workspace_id, user_id=user_id, dm=dm, looking_at=looking_at
    )
    where = {"thread_ts": thread_ts} if thread_ts else {}
    try:
        client.assistant_threads_setSuggestedPrompts(channel_id=dm, title="Try asking", prompts=prompts, **where)
    except SlackApiError as exc:
        log.warning("could not suggest prompts to %s: %s", user_id, exc.response.get("error"))


def _person(body: dict[str, Any]) -> str | None:
    """The person an event is about, where the event itself does not say (Slack's authorizations)."""
    for authorization in body.get("authorizations") or []:
        if isinstance(authorization, dict) and not authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return None


def on_assistant_context_changed(event: dict[str, Any], context: BoltContext) -> None:
    services: Services = context[CONTEXT_KEY]
    thread = event["assistant_thread"]
    with services.db.session() as session:
        set_context(
            session,
            channel_id=thread["channel_id"],
            thread_ts=thread["thread_ts"],
            context_channel_id=(thread.get("context") or {}).get("channel_id"),
        )


def on_ask_about_shortcut(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """A new thread in the person's DM that quotes the message; Ember answers what they ask in it."""
    ack()
    services: Services = context[CONTEXT_KEY]
    user, channel = body["user"]["id"], body["channel"]["id"]
    message = body.get("message") or {}
    ts = str(message.get("ts") or body.get("message_ts") or "")
    workspace = str((body.get("team") or {}).get("id") or context.team_id or "")
    try:
        link = client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
    except SlackApiError:
        link = None
    where = f"<{link}|this message>" if link else "this message"
    author = f" from <@{message['user']}>" if message.get("user") else ""
    quoted = "\n".join(f"> {line}" for line in _clip_text(str(message.get("text") or ""), QUOTE_LIMIT).splitlines())
    text = f"You asked me about {where}{author} in <#{channel}>:\n{quoted}\n\nAsk me anything about it in this thread."
    try:
        dm = client.conversations_open(users=user)["channel"]["id"]
        root = client.chat_postMessage(channel=dm, text=text)
    except SlackApiError as exc:
        log.warning("could not start a thread about a message for %s: %s", user, exc.response.get("error"))
        return
    with services.db.session() as session:
        thread_started(
            session,
            workspace_id=workspace,
            channel_id=dm,
            thread_ts=str(root["ts"]),
            user_id=user,
            context_channel_id=channel,
        )


def suggested_prompts(
    services: Services, client: WebClient, *, workspace_id: str, user_id: str, dm: str, looking_at: str | None
) -> list[dict[str, str]]:
    prompts: list[dict[str, str]] = []
    name = catchable(services, client, looking_at, user_id) if looking_at else None
    if looking_at and name:
        prompts.append({"title": f"Catch me up on #{name}", "message": f"Catch me up on <#{looking_at}>"})
    with services.db.session() as session:
        popular = popular_questions(
            session,
            audience=Audience(workspace_id, dm),
            since=datetime.now(UTC) - POPULAR_SINCE,
            limit=PROMPTS_LIMIT,
        )
    for question in popular:
        prompts.append({"title": _clip(question, PROMPT_TITLE_LIMIT), "message": question})
    for default in DEFAULT_PROMPTS:
        if all(p["message"] != default["message"] for p in prompts):
            prompts.append(dict(default))
    return prompts[:PROMPTS_LIMIT]


def catchable(services: Services, client: WebClient, channel_id: str, user_id: str) -> str | None:
    """The channel's name if Ember is in it and the person may read it (public, or private with them
    in it); None if a catch-up is not on offer. One conversations.info call answers both."""
    if services.digests is None:
        return None
    try:
        info = client.conversations_info(channel=channel_id).get("channel") or {}
    except SlackApiError:
        return None
    if not info.get("is_member") or info.get("is_im") or info.get("is_mpim"):
        return None
    channel_type = "group" if info.get("is_private") else "channel"
    allowed = dm_digest_holds(
        channel_type=channel_type, recipient_is_member=services.digests.is_member(channel_id, user_id), recap=False
    )
    return str(info.get("name") or channel_id) if allowed else None


def before_answering_dm(services: Services, client: WebClient, ask: SlackAsk) -> bool:
    """For a DM: "Catch me up on #channel" runs a catch-up instead of an answer (True; its claim is
    settled when it is done). Otherwise the first question of a thread gives it its title: a top-level
    message (which opens its own thread) or the first in a thread of the pane. It is then answered as
    any DM (False)."""
    wanted = CATCH_UP.match(ask.text)
    if wanted:
        services.in_background(lambda: _catch_up_settled(services, client, ask, wanted.group(1)))
        return True
    if not ask.reply_thread_ts:
        return False
    if ask.reply_thread_ts == ask.ts:
        first = True  # a top-level message opens its own thread (the agent view's model)
    else:
        with services.db.session() as session:  # a thread of the pane (not titled yet), or no title
            first = take_title(session, channel_id=ask.channel_id, thread_ts=ask.reply_thread_ts)
    if first:
        try:
            client.assistant_threads_setTitle(
                channel_id=ask.channel_id, thread_ts=ask.reply_thread_ts, title=_clip(ask.text, TITLE_LIMIT)
            )
        except SlackApiError as exc:
            log.warning("could not title the thread of %s: %s", ask.user_id, exc.response.get("error"))
    return False


def _catch_up_settled(services: Services, client: WebClient, ask: SlackAsk, channel_id: str) -> None:
    try:
        _catch_up(services, client, ask, channel_id)
    except Exception:
        log.exception("the catch-up of %s for %s failed", channel_id, ask.user_id)
        settle_failed(services, ask.event_id)
        return
    settle(services, ask.event_id)


def _catch_up(services: Services, client: WebClient, ask: SlackAsk, channel_id: str) -> None:
    reply = run_catch_up(services, client, workspace_id=ask.workspace_id, user_id=ask.user_id, channel_id=channel_id)
    client.chat_postMessage(channel=ask.channel_id, thread_ts=ask.reply_thread_ts, text=reply)


def run_catch_up(services: Services, client: WebClient, *, workspace_id: str, user_id: str, channel_id: str) -> str:
    """The last day of `channel_id`, digested and sent to `user_id` by DM if they may read it; what to tell them."""
    if services.digests is None:
        return CATCH_UP_UNAVAILABLE
    if catchable(services, client, channel_id, user_id) is None:
        log.info("refused %s a catch-up of %s", user_id, channel_id)
        return CATCH_UP_REFUSED
    end = datetime.now(UTC)
    outcome = services.digests.catch_up(
        workspace_id=workspace_id,
        channel_id=channel_id,
        channel_type=services.channel_type(client, channel_id),
        user_id=user_id,
        window=(end - timedelta(hours=24), end),
        timezone=services.digest_timezone,
    )
    log.info("catch-up of %s for %s: %s", channel_id, user_id, outcome.status)
    if outcome.status == "refused":
        return CATCH_UP_REFUSED
    if outcome.status == FAILED:
        return CATCH_UP_FAILED
    return CATCH_UP_SENT.format(channel=channel_id)


def _clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _clip(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
