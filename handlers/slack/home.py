"""The App Home tab, per person: the model Ember serves and when it was promoted, the last nightly
runs and what became of them, the digests that person gets or set up (each with a Turn off button),
and what Ember keeps of them, with Forget me behind Slack's own confirmation dialog.

Slack sends `app_home_opened` each time someone opens the tab, and the view is built fresh then.
People who opened it since this process started get it again after a model swap or a nightly run
(`refresh_homes`), so a tab left open does not show yesterday's model.
"""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from db.assistant import viewing
from db.digests import CHANNEL, Subscription, owned_by, reschedule, unsubscribe
from db.repo import forget_user
from db.schema import Memory, TrainingRun, Turn, Vote
from handlers.qa.schedule import ScheduleError, parse_schedule
from handlers.slack.assistant import catchable, on_messages_tab_opened, run_catch_up
from handlers.slack.services import CONTEXT_KEY, Services
from models import registry

log = logging.getLogger(__name__)

HOME_DIGEST_OFF = "ember_home_digest_off"
HOME_DIGEST_EDIT = "ember_home_digest_edit"
EDIT_CALLBACK = "ember_digest_schedule"
SCHEDULE_BLOCK, SCHEDULE_INPUT = "schedule", "schedule_input"
HOME_FORGET = "ember_home_forget"
HOME_CATCH_UP = "ember_home_catch_up"
RUNS_SHOWN = 3
GONE = "That digest is already stopped."
# Slack takes at most 100 blocks in a view: two a digest, and about 15 for the rest of the tab.
DIGESTS_SHOWN = 40
Block = dict[str, Any]


def refresh_homes(services: Services, client: WebClient) -> None:
    """Publish again the Home tab of everyone who opened it since start-up (after a swap or a run)."""
    for user_id, workspace_id in services.home_viewers.seen().items():
        publish_home(services, client, workspace_id=workspace_id, user_id=user_id)


def refresh_home(services: Services, client: WebClient, *, workspace_id: str, user_id: str) -> None:
    """Publish one person's Home tab again if they have opened it since start-up."""
    if user_id in services.home_viewers.seen():
        publish_home(services, client, workspace_id=workspace_id, user_id=user_id)


def home_view(
    services: Services, *, workspace_id: str, user_id: str, note: str = "", client: WebClient | None = None
) -> dict[str, Any]:
    with services.db.session() as session:
        looking_at = viewing(session, workspace_id=workspace_id, user_id=user_id)
        active = registry.active(session)
        runs = list(session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(RUNS_SHOWN)))
        digests = owned_by(session, workspace_id=workspace_id, user_id=user_id)
        turns = session.scalar(
            select(func.count(Turn.id)).where(Turn.workspace_id == workspace_id, Turn.user_id == user_id)
        )
        votes = session.scalar(
            select(func.count(Vote.id))
            .join(Turn, Vote.turn_id == Turn.id)
            .where(Turn.workspace_id == workspace_id, Vote.user_id == user_id)
        )
        memories = session.scalar(
            select(func.count(Memory.id)).where(Memory.workspace_id == workspace_id, Memory.user_id == user_id)
        )
        run_lines = [_run_line(run) for run in runs]
    served = services.qa.engine.version
    promoted = (
        f", promoted {active.activated_at:%Y-%m-%d %H:%M} UTC"
        if active is not None and active.version == served and active.activated_at and active.parent
        else ""
    )
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": "Ember"}}]
    if note:
        blocks.append(_section(note))
    blocks += [
        _section(f"*Model:* `{served}`{promoted}"),
        _section("*Last nightly runs*\n" + ("\n".join(run_lines) if run_lines else "None yet.")),
        {"type": "divider"},
        _section("*Your digests*" if digests else "*Your digests*\nNone. `/ember digest daily 09:00` sets one up."),
    ]
    blocks += [block for sub in digests[:DIGESTS_SHOWN] for block in _digest_blocks(sub)]
    if len(digests) > DIGESTS_SHOWN:
        blocks.append(_context(f"…and {len(digests) - DIGESTS_SHOWN} more: `/ember digest list` in a channel."))
    name = catchable(services, client, looking_at, user_id) if client is not None and looking_at else None
    if looking_at and name:
        # The channel the person looked at last beside Ember (the agent view says which).
        blocks.append(
            {
                "type": "section",
                "block_id": "catch-up",
                "text": {"type": "mrkdwn", "text": f"Missed something in <#{looking_at}>? I can sum up its last day."},
                "accessory": {
                    "type": "button",
                    "action_id": HOME_CATCH_UP,
                    "value": looking_at,
                    "text": {"type": "plain_text", "text": f"Catch me up on #{name}"},
                },
            }
        )
    blocks += [
        {"type": "divider"},
        {
            "type": "section",
            "block_id": "kept",
            "text": {
                "type": "mrkdwn",
                "text": f"*What I keep of you:* {_count(turns, 'question')} with my answers, "
                f"{_count(votes, 'vote')}, {_count(memories, 'memory', 'memories')}.",
            },
            "accessory": _forget_button(),
        },
        _context("Ask me in a DM, mention me in a channel, or use `/ember ask`."),
    ]
    return {"type": "home", "blocks": blocks}


def publish_home(services: Services, client: WebClient, *, workspace_id: str, user_id: str, note: str = "") -> None:
    """Publish `user_id`'s Home tab; a failure is logged (the tab keeps its last content)."""
    try:
        view = home_view(services, workspace_id=workspace_id, user_id=user_id, note=note, client=client)
        client.views_publish(user_id=user_id, view=view)
    except SlackApiError as exc:
        log.warning("could not publish the home tab of %s: %s", user_id, exc.response.get("error"))


def on_app_home_opened(event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    services: Services = context[CONTEXT_KEY]
    workspace_id = str(body.get("team_id") or context.team_id or "")
    if event.get("tab", "home") != "home":
        # The messages tab: under the agent view, where people ask; it gets the suggested prompts.
        dm = str(event.get("channel") or "")
        if dm:
            on_messages_tab_opened(services, client, workspace_id=workspace_id, user_id=event["user"], dm=dm)
        return
    services.home_viewers.opened(event["user"], workspace_id)
    publish_home(services, client, workspace_id=workspace_id, user_id=event["user"])


def on_home_digest_off(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services: Services = context[CONTEXT_KEY]
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    sub = _own_digest(services, body, context, str(body["actions"][0].get("value", "")))
    if sub is not None:
        with services.db.session() as session:
            unsubscribe(session, subscription_ids=[sub.id])
        services.digests_changed()
    note = f"Stopped {_what(sub)}." if sub is not None else GONE
    publish_home(services, client, workspace_id=workspace_id, user_id=user_id, note=note)


def on_home_digest_edit(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Edit opens a modal with the schedule as the person wrote it."""
    ack()
    services: Services = context[CONTEXT_KEY]
    sub = _own_digest(services, body, context, str(body["actions"][0].get("value", "")))
    if sub is None:
        publish_home(services, client, workspace_id=_workspace(body, context), user_id=body["user"]["id"], note=GONE)
        return
    client.views_open(trigger_id=body["trigger_id"], view=schedule_modal(sub))


def on_schedule_submit(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    services: Services = context[CONTEXT_KEY]
    typed = str(view["state"]["values"][SCHEDULE_BLOCK][SCHEDULE_INPUT].get("value") or "")
    try:
        schedule = parse_schedule(shlex.split(typed))
    except (ScheduleError, ValueError) as exc:
        # The modal stays open with the reason under the field; nothing changes.
        ack(response_action="errors", errors={SCHEDULE_BLOCK: str(exc)[:150]})
        return
    ack()
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    sub = _own_digest(services, body, context, view.get("private_metadata", ""))
    if sub is None:
        publish_home(services, client, workspace_id=workspace_id, user_id=user_id, note=GONE)
        return
    with services.db.session() as session:
        reschedule(session, subscription_id=sub.id, cron=schedule.cron, label=schedule.label)
    services.digests_changed()
    note = f"{_what(sub).capitalize()} is now {schedule.label} ({sub.timezone})."
    publish_home(services, client, workspace_id=workspace_id, user_id=user_id, note=note)


def schedule_modal(sub: Subscription) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK,
        "private_metadata": str(sub.id),
        "title": {"type": "plain_text", "text": "Digest schedule"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _section(f"When should I post {_what(sub)}? Times are in {sub.timezone}."),
            {
                "type": "input",
                "block_id": SCHEDULE_BLOCK,
                "label": {"type": "plain_text", "text": "Schedule"},
                "hint": {"type": "plain_text", "text": 'daily 09:00, weekly fri 17:00, or cron "0 9 * * 1-5"'},
                "element": {
                    "type": "plain_text_input",
                    "action_id": SCHEDULE_INPUT,
                    "initial_value": sub.label,
                },
            },
        ],
    }


def _own_digest(services: Services, body: dict[str, Any], context: BoltContext, wanted: str) -> Subscription | None:
    """The digest `wanted` names, if this person gets it or set it up: a forged id finds nothing."""
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    if not wanted.isascii() or not wanted.isdigit() or int(wanted) >= 2**31:  # ids are 32-bit in PostgreSQL
        return None
    with services.db.session() as session:
        mine = owned_by(session, workspace_id=workspace_id, user_id=user_id, subscription_id=int(wanted))
    return mine[0] if mine else None


def on_home_catch_up(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Catch me up: the channel's last day, by DM, if the person may read it (checked again here)."""
    ack()
    services: Services = context[CONTEXT_KEY]
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    channel_id = str(body["actions"][0].get("value", ""))

    def catch_up() -> None:
        reply = run_catch_up(services, client, workspace_id=workspace_id, user_id=user_id, channel_id=channel_id)
        publish_home(services, client, workspace_id=workspace_id, user_id=user_id, note=reply)

    services.in_background(catch_up)


def on_home_forget(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Slack has already asked "Forget everything?" (the button's confirm dialog)."""
    ack()
    services: Services = context[CONTEXT_KEY]
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    with services.db.session() as session:
        gone = forget_user(session, workspace_id=workspace_id, user_id=user_id, index=services.index)
    if gone.digests:
        services.digests_changed()
    note = (
        f"Done: I removed {_count(gone.turns, 'question')} with my answers, {_count(gone.votes, 'vote')} "
        f"and {_count(gone.memories, 'memory', 'memories')}."
    )
    publish_home(services, client, workspace_id=workspace_id, user_id=user_id, note=note)


def _workspace(body: dict[str, Any], context: BoltContext) -> str:
    return str((body.get("team") or {}).get("id") or context.team_id or "")


def _run_line(run: TrainingRun) -> str:
    when = run.finished_at or run.started_at
    taught = f"{run.examples} examples ({run.desirable} good, {run.undesirable} bad)"
    verdict = {
        "promoted": f"promoted `{run.candidate_version}`",
        "rejected": "kept the model it had: the fine-tune did not measure better",
        "skipped": "skipped",
        "failed": "failed; the model it had kept serving",
        "running": "running now",
    }.get(run.status, run.status)
    reason = ""
    if run.status in ("rejected", "skipped") and run.detail:
        try:
            detail = json.loads(run.detail)
            reason = str(detail.get("reason") or (detail.get("gate") or {}).get("reason") or "")
        except (ValueError, AttributeError):
            reason = ""
    return f"• {when:%Y-%m-%d %H:%M} UTC: {taught}; {verdict}" + (f" ({reason})" if reason else "")


def _what(sub: Subscription) -> str:
    return f"the digest of <#{sub.channel_id}>" if sub.kind == CHANNEL else "your personal recap"


def _digest_blocks(sub: Subscription) -> list[Block]:
    return [
        _section(f"{_what(sub).capitalize()}: {sub.label} ({sub.timezone})"),
        {
            "type": "actions",
            "block_id": f"digest-{sub.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": HOME_DIGEST_EDIT,
                    "value": str(sub.id),
                    "text": {"type": "plain_text", "text": "Edit"},
                },
                {
                    "type": "button",
                    "action_id": HOME_DIGEST_OFF,
                    "value": str(sub.id),
                    "text": {"type": "plain_text", "text": "Turn off"},
                    "confirm": _confirm("Turn this digest off?", f"I will stop posting {_what(sub)}.", "Turn off"),
                },
            ],
        },
    ]


def _forget_button() -> Block:
    return {
        "type": "button",
        "action_id": HOME_FORGET,
        "style": "danger",
        "text": {"type": "plain_text", "text": "Forget me"},
        "confirm": _confirm(
            "Forget everything?",
            "This deletes every question you asked me in this workspace, my answers to them, your votes, "
            "your personal recaps, and what I remembered from you. It cannot be undone.",
            "Forget everything",
        ),
    }


def _confirm(title: str, text: str, yes: str) -> Block:
    """Slack's confirmation dialog: shown before the click reaches Ember."""
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "plain_text", "text": text},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }


def _count(n: int | None, one: str, many: str = "") -> str:
    n = n or 0
    return f"{n} {one if n == 1 else many or one + 's'}"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
