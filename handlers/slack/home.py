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
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from db.digests import CHANNEL, Subscription, subscriptions, unsubscribe
from db.repo import forget_user
from db.schema import Memory, TrainingRun, Turn, Vote
from handlers.slack.services import CONTEXT_KEY, Services
from models import registry

log = logging.getLogger(__name__)

HOME_DIGEST_OFF = "ember_home_digest_off"
HOME_FORGET = "ember_home_forget"
RUNS_SHOWN = 3
# Slack takes at most 100 blocks in a view; the rest of the tab needs about 15.
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


def home_view(services: Services, *, workspace_id: str, user_id: str, note: str = "") -> dict[str, Any]:
    with services.db.session() as session:
        active = registry.active(session)
        runs = list(session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(RUNS_SHOWN)))
        digests = [
            s
            for s in subscriptions(session, workspace_id=workspace_id)
            if s.user_id == user_id  # the recaps they get, and the channel digests they set up
        ]
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
    blocks += [_digest_block(sub) for sub in digests[:DIGESTS_SHOWN]]
    if len(digests) > DIGESTS_SHOWN:
        blocks.append(_context(f"…and {len(digests) - DIGESTS_SHOWN} more: `/ember digest list` in a channel."))
    blocks += [
        {"type": "divider"},
        {
            "type": "section",
            "block_id": "kept",
            "text": {
                "type": "mrkdwn",
                "text": f"*What I keep of you:* {turns or 0} questions with my answers, {votes or 0} votes, "
                f"{memories or 0} memories.",
            },
            "accessory": _forget_button(),
        },
        _context("Ask me in a DM, mention me in a channel, or use `/ember ask`."),
    ]
    return {"type": "home", "blocks": blocks}


def publish_home(services: Services, client: WebClient, *, workspace_id: str, user_id: str, note: str = "") -> None:
    """Publish `user_id`'s Home tab; a failure is logged (the tab keeps its last content)."""
    try:
        view = home_view(services, workspace_id=workspace_id, user_id=user_id, note=note)
        client.views_publish(user_id=user_id, view=view)
    except SlackApiError as exc:
        log.warning("could not publish the home tab of %s: %s", user_id, exc.response.get("error"))


def on_app_home_opened(event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    if event.get("tab", "home") != "home":
        return  # the Messages tab: DMs are answered as messages
    services: Services = context[CONTEXT_KEY]
    workspace_id = str(body.get("team_id") or context.team_id or "")
    services.home_viewers.opened(event["user"], workspace_id)
    publish_home(services, client, workspace_id=workspace_id, user_id=event["user"])


def on_home_digest_off(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    ack()
    services: Services = context[CONTEXT_KEY]
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    wanted = str(body["actions"][0].get("value", ""))
    with services.db.session() as session:
        # Only a digest this person gets or set up: a forged value cannot stop someone else's.
        mine = [s for s in subscriptions(session, workspace_id=workspace_id) if s.user_id == user_id]
        gone = [s for s in mine if str(s.id) == wanted]
        unsubscribe(session, subscription_ids=[s.id for s in gone])
    if gone:
        services.digests_changed()
    note = f"Stopped {_what(gone[0])}." if gone else "That digest was already stopped."
    publish_home(services, client, workspace_id=workspace_id, user_id=user_id, note=note)


def on_home_forget(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Slack has already asked "Forget everything?" (the button's confirm dialog)."""
    ack()
    services: Services = context[CONTEXT_KEY]
    user_id, workspace_id = body["user"]["id"], _workspace(body, context)
    with services.db.session() as session:
        gone = forget_user(session, workspace_id=workspace_id, user_id=user_id, index=services.index)
    if gone.digests:
        services.digests_changed()
    note = f"Done: I removed {gone.turns} questions with my answers, {gone.votes} votes and {gone.memories} memories."
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


def _digest_block(sub: Subscription) -> Block:
    return {
        "type": "section",
        "block_id": f"digest-{sub.id}",
        "text": {"type": "mrkdwn", "text": f"{_what(sub).capitalize()}: {sub.label} ({sub.timezone})"},
        "accessory": {
            "type": "button",
            "action_id": HOME_DIGEST_OFF,
            "value": str(sub.id),
            "text": {"type": "plain_text", "text": "Turn off"},
            "confirm": _confirm("Turn this digest off?", f"I will stop posting {_what(sub)}.", "Turn off"),
        },
    }


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


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
