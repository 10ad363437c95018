"""`/ember digest ...` and `/ember summarize ...`, the "Summarize this thread" shortcut, and votes on digests.

Schedules are parsed here into a cron line before anything is stored: bad input gets a reply that says
what to write instead, and nothing is stored.
"""

from __future__ import annotations

import logging
import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db.digests import (
    CHANNEL,
    PERSONAL,
    Subscription,
    last_posted_end,
    record_digest_vote,
    run_for_message,
    subscribe,
    subscriptions,
    unsubscribe,
)
from db.visibility import dm_digest_holds
from handlers.qa.digest import WindowTooSmall
from handlers.qa.schedule import ScheduleError, cron_trigger, next_firing, parse_schedule
from handlers.slack.digest_post import DIGEST_UP
from handlers.slack.home import refresh_home
from handlers.slack.services import CONTEXT_KEY, Services

log = logging.getLogger(__name__)

SUMMARIZE_SHORTCUT = "ember_summarize_thread"
DIGEST_USAGE = (
    "*Digests*\n"
    "• `/ember digest daily [HH:MM]`: a digest of this channel every day, posted here\n"
    "• `/ember digest weekly [mon..sun] [HH:MM]`: once a week\n"
    '• `/ember digest cron "0 9 * * 1-5"`: on any crontab schedule (minute hour day month weekday)\n'
    "• `/ember digest me daily [HH:MM]`: a personal recap by DM of the channels you and I share\n"
    "• `/ember digest list`, `/ember digest off [ID]`: see or stop digests\n"
    "• `/ember digest now [24h|7d|since-last]`: a catch-up of this channel, just for you\n"
    "• `/ember summarize <link to a message>`: sum up that thread (or use the message shortcut "
    "*Summarize this thread*)"
)


# --- /ember digest -----------------------------------------------------------------------------


def on_digest(
    ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext, rest: str
) -> None:
    services: Services = context[CONTEXT_KEY]
    try:
        words = shlex.split(rest)
    except ValueError:
        words = rest.replace('"', " ").split()
    action = words[0].lower() if words else "help"
    if action == "help":
        ack(text=DIGEST_USAGE, response_type="ephemeral")
    elif action == "list":
        ack(text=_list(services, command), response_type="ephemeral")
    elif action == "off":
        ack(text=_off(services, command, words[1:]), response_type="ephemeral")
    elif action == "now":
        _now(ack, services, client, command, words[1:])
    elif action == "me":
        ack(text=_subscribe(services, client, command, words[1:], kind=PERSONAL), response_type="ephemeral")
    else:
        ack(text=_subscribe(services, client, command, words, kind=CHANNEL), response_type="ephemeral")
    if action not in ("help", "list", "now"):
        # The Home tab lists the person's digests: an open one shows the change.
        refresh_home(services, client, workspace_id=command.get("team_id", ""), user_id=command["user_id"])


def _subscribe(services: Services, client: WebClient, command: dict[str, Any], words: list[str], *, kind: str) -> str:
    try:
        schedule = parse_schedule(words)
    except ScheduleError as exc:
        return f"{exc}\n\n{DIGEST_USAGE}"
    channel_id, user_id = command["channel_id"], command["user_id"]
    if kind == CHANNEL and not _bot_is_member(client, channel_id):
        return "I can't read this channel yet: invite me first (`/invite @Ember`), then ask again."
    zone = _user_zone(client, user_id, services.digest_timezone)
    with services.db.session() as session:
        sub = subscribe(
            session,
            workspace_id=command.get("team_id", ""),
            kind=kind,
            channel_id=channel_id,
            channel_type=services.channel_type(client, channel_id),
            user_id=user_id,
            cron=schedule.cron,
            timezone=zone,
            label=schedule.label,
        )
    services.digests_changed()
    where = "here" if kind == CHANNEL else "to you by DM, covering the channels you and I share"
    what = "A digest of this channel" if kind == CHANNEL else "Your personal recap"
    return (
        f"{what} is set: {schedule.label} ({zone}), posted {where}. Next one: {_next(sub)}. "
        f"ID {sub.id}: `/ember digest off {sub.id}` stops it."
    )


def _list(services: Services, command: dict[str, Any]) -> str:
    with services.db.session() as session:
        found = subscriptions(
            session,
            workspace_id=command.get("team_id", ""),
            channel_id=command["channel_id"],
            user_id=command["user_id"],
        )
    if not found:
        return "No digests here yet. `/ember digest daily 09:00` sets one up."
    lines = ["*Digests*"]
    for sub in found:
        what = f"<#{sub.channel_id}>" if sub.kind == CHANNEL else "your personal recap"
        lines.append(f"• `{sub.id}` {what}: {sub.label} ({sub.timezone}), next {_next(sub)}")
    return "\n".join(lines)


def _off(services: Services, command: dict[str, Any], words: list[str]) -> str:
    with services.db.session() as session:
        mine = subscriptions(
            session,
            workspace_id=command.get("team_id", ""),
            channel_id=command["channel_id"],
            user_id=command["user_id"],
        )
        if words:
            wanted = [s for s in mine if str(s.id) == words[0].lstrip("#")]
            if not wanted:
                return f"There is no digest `{words[0]}` here. `/ember digest list` shows their IDs."
        else:
            wanted = [s for s in mine if s.kind == CHANNEL]
            if not wanted:
                return "This channel has no digest to stop. `/ember digest list` shows yours."
        unsubscribe(session, subscription_ids=[s.id for s in wanted])
    services.digests_changed()
    return "Stopped: " + ", ".join(f"`{s.id}` ({s.label})" for s in wanted) + "."


def _now(ack: Ack, services: Services, client: WebClient, command: dict[str, Any], words: list[str]) -> None:
    span = (words[0].lower() if words else "24h").strip()
    end = datetime.now(UTC)
    workspace, channel = command.get("team_id", ""), command["channel_id"]
    if span in ("24h", "1d", "day"):
        start = end - timedelta(hours=24)
    elif span in ("7d", "week"):
        start = end - timedelta(days=7)
    elif span == "since-last":
        with services.db.session() as session:
            last = last_posted_end(session, workspace_id=workspace, channel_id=channel)
        start = last or end - timedelta(hours=24)
    else:
        ack(text=f"`{span}` is not a span I know: use `24h`, `7d` or `since-last`.", response_type="ephemeral")
        return
    if services.digests is None:
        ack(text="Digests are not available here.", response_type="ephemeral")
        return
    ack(text="Reading this channel; I'll send you the catch-up by DM.", response_type="ephemeral")
    outcome = services.digests.catch_up(
        workspace_id=workspace,
        channel_id=channel,
        channel_type=services.channel_type(client, channel),
        user_id=command["user_id"],
        window=(start, end),
        timezone=_user_zone(client, command["user_id"], services.digest_timezone),
    )
    log.info("catch-up for %s in %s: %s", command["user_id"], channel, outcome.status)


# --- summarising one thread --------------------------------------------------------------------


def on_summarize_command(
    ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond, context: BoltContext, rest: str
) -> None:
    services: Services = context[CONTEXT_KEY]
    target = _thread_link(rest)
    if target is None:
        ack(
            text="Slack doesn't run slash commands inside threads, so tell me which one: "
            "`/ember summarize <link to a message in the thread>` (Copy link on the message), "
            "or use the message shortcut *Summarize this thread* from the message's ⋮ menu.",
            response_type="ephemeral",
        )
        return
    channel_id, ts = target
    ack(text="Reading the thread…", response_type="ephemeral")
    respond(text=_summarize(services, client, channel_id, ts, command["user_id"]), response_type="ephemeral")


def on_summarize_shortcut(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services: Services = context[CONTEXT_KEY]
    channel_id = body["channel"]["id"]
    message = body.get("message") or {}
    ts = str(message.get("thread_ts") or message.get("ts") or body.get("message_ts"))
    user = body["user"]["id"]
    text = _summarize(services, client, channel_id, ts, user)
    try:
        client.chat_postEphemeral(channel=channel_id, user=user, thread_ts=ts, text=text)
    except SlackApiError as exc:  # the person left, or the channel went away, while it was read
        log.warning("could not show %s the summary in %s: %s", user, channel_id, exc.response.get("error"))


def _summarize(services: Services, client: WebClient, channel_id: str, ts: str, user_id: str) -> str:
    if services.digests is None:
        return "Summaries are not available here."
    runner = services.digests
    member = runner.is_member(channel_id, user_id)
    if not dm_digest_holds(
        channel_type=services.channel_type(client, channel_id), recipient_is_member=member, recap=False
    ):
        return "I can't summarise a conversation you can't read."
    try:
        collected, digest = runner.summarize_thread(channel_id, ts)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in ("not_in_channel", "channel_not_found"):
            return "I'm not in that channel, so I can't read the thread: invite me with `/invite @Ember`."
        if error == "thread_not_found":
            return "I can't find that thread any more."
        raise
    except WindowTooSmall as exc:
        log.warning("cannot summarise %s in %s: %s", ts, channel_id, exc)
        return (
            "The model I run on reads too little at once to summarise a thread. "
            "Whoever runs Ember can set `EMBER_MODEL` to a model with a longer context window."
        )
    if collected.messages == 0:
        return "That thread has nothing from people for me to sum up."
    return runner.thread_text(collected, digest)


def _thread_link(text: str) -> tuple[str, str] | None:
    """A message link (https://team.slack.com/archives/C123/p1700000000123456?thread_ts=...) -> (channel, ts)."""
    text = text.strip().strip("<>").split("|")[0]
    parsed = urlparse(text)
    match = re.match(r"^/archives/([A-Z0-9]+)/p(\d{10})(\d{6})$", parsed.path)
    if not match:
        return None
    thread = parse_qs(parsed.query).get("thread_ts")
    ts = thread[0] if thread else f"{match.group(2)}.{match.group(3)}"
    return match.group(1), ts


# --- votes on digests --------------------------------------------------------------------------


def on_digest_vote(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services: Services = context[CONTEXT_KEY]
    action = (body.get("actions") or [{}])[0]
    direction, _, run_ref = str(action.get("value") or "").partition(":")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    message_ts = (body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts", "")
    user = body["user"]["id"]
    with services.db.session() as session:
        run_id = run_for_message(session, channel_id=channel, message_ts=message_ts)
        if run_id is None or str(run_id) != run_ref:
            text = "Sorry, I can't find that digest any more, so I couldn't record your feedback."
        else:
            record_digest_vote(
                session, run_id=run_id, user_id=user, value=1 if action.get("action_id") == DIGEST_UP else -1
            )
            text = "Thanks! Your feedback on digests shapes how I write them."
    client.chat_postEphemeral(channel=channel, user=user, thread_ts=message_ts, text=text)
    log.info("digest vote %s on run %s", direction, run_ref)


# --- helpers -----------------------------------------------------------------------------------


def _next(sub: Subscription) -> str:
    upcoming = next_firing(cron_trigger(sub.cron, sub.timezone), datetime.now(UTC))
    return f"{upcoming:%a %d %b %H:%M}" if upcoming is not None else "never"


def _bot_is_member(client: WebClient, channel_id: str) -> bool:
    try:
        info = client.conversations_info(channel=channel_id).get("channel") or {}
    except SlackApiError:
        return False
    # DMs with Ember have no is_member; Ember is in them by definition.
    return bool(info.get("is_member", True)) or bool(info.get("is_im"))


def _user_zone(client: WebClient, user_id: str, default: str) -> str:
    """The person's time zone (users.info `tz`), or EMBER_TIMEZONE when Slack doesn't say."""
    try:
        zone = (client.users_info(user=user_id).get("user") or {}).get("tz")
        if zone:
            ZoneInfo(zone)
            return str(zone)
    except (SlackApiError, ZoneInfoNotFoundError, ValueError):
        pass
    return default
