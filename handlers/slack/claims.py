"""Events that become answers are claimed before Slack hears the ack, with their envelope (db.claims).

A process that dies after acking an event would otherwise lose it: Slack does not redeliver what was
acknowledged. With the claim written first, a live process answers it instead: at once when Slack
redelivers it, or when `ClaimKeeper` (bot.claim_keeper) finds it orphaned. A takeover is replayed
through the same Bolt app, marked in its context so it is not claimed a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import BoltContext, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db.claims import Claim, claim_event, finish_event
from handlers.slack.answering import FAILURE_REPLY
from handlers.slack.services import CONTEXT_KEY, Services
from handlers.slack.text import is_from_person

log = logging.getLogger(__name__)

# In a replayed request's context: the event this process has already taken over.
TAKEOVER_KEY = "ember_takeover"
GAVE_UP_REPLY = (
    "Sorry, I could not answer this: every attempt failed. Please ask again, and tell whoever runs Ember "
    "if it keeps happening."
)


def answerable_event(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The event of an envelope Ember answers (a person's mention, or a DM), or None."""
    if body.get("type") != "event_callback" or not isinstance(body.get("event_id"), str):
        return None
    event = body.get("event")
    if not isinstance(event, Mapping) or not is_from_person(event):
        return None
    if event.get("type") == "app_mention" or (event.get("type") == "message" and event.get("channel_type") == "im"):
        return event
    return None


def claim_middleware(body: dict[str, Any], context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
    event = answerable_event(body)
    if event is None or context.get(TAKEOVER_KEY) == body["event_id"]:
        next()
        return None
    services: Services = context[CONTEXT_KEY]
    work = {key: value for key, value in body.items() if key != "token"}  # the verification token stays out
    with services.db.session() as session:
        outcome = claim_event(
            session,
            event_id=body["event_id"],
            lease=services.event_lease,
            owner=services.owner,
            work=work,
            stale_after=services.owner_stale_after,
        )
    if outcome is Claim.TAKEN:
        next()
        return None
    if outcome is Claim.GIVE_UP and context.client is not None:
        tell_gave_up(context.client, body)
    log.info("event %s is already answered or being answered; not answering again", body["event_id"])
    return BoltResponse(status=200, body="")


def replay(work: Mapping[str, Any], event_id: str) -> BoltRequest:
    """The envelope of a claim this process took over, as a request its Bolt app can dispatch."""
    return BoltRequest(body=dict(work), mode="socket_mode", context={TAKEOVER_KEY: event_id})


def reply_place(event: Mapping[str, Any]) -> tuple[str, str | None]:
    """Where an answer to this event goes: the mention's thread, or the DM (its thread, if any)."""
    channel, ts = str(event.get("channel")), event.get("thread_ts")
    if event.get("type") == "app_mention":
        return channel, str(ts or event.get("ts"))
    return channel, str(ts) if ts else None


def tell_gave_up(client: WebClient, body: Mapping[str, Any]) -> None:
    event = answerable_event(body)
    if event is None:
        return
    channel, thread_ts = reply_place(event)
    try:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=GAVE_UP_REPLY)
    except (SlackApiError, OSError) as exc:
        log.error("could not tell %s that event %s was given up: %s", channel, body.get("event_id"), exc)


def on_listener_error(error: Exception, body: dict[str, Any], context: BoltContext) -> None:
    """Bolt's error handler. A listener that raised before handing its event to the answer pool left
    the claim held by a live process, so Slack's redeliveries would be dropped and the asker would
    hear nothing: the claim is marked failed (a redelivery or a takeover tries again) and the asker
    is told."""
    log.error("handling a Slack %s failed", body.get("type") or "command", exc_info=error)
    event = answerable_event(body)
    services = context.get(CONTEXT_KEY)
    if event is None or not isinstance(services, Services):
        return
    try:
        with services.db.session() as session:
            finish_event(session, event_id=body["event_id"], ok=False)
    except Exception:
        log.exception("could not record that event %s failed", body["event_id"])
    if context.client is None:
        return
    channel, thread_ts = reply_place(event)
    try:
        context.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=FAILURE_REPLY)
    except (SlackApiError, OSError) as exc:
        log.error("could not tell %s that event %s failed: %s", channel, body["event_id"], exc)
