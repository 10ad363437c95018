"""The one path every Slack surface takes once it has a question: context, answer, post, remember.

It runs off the ack path (Bolt acks first, then calls the listener in its executor), claims the
Slack event so a redelivery never answers twice, and tells the asker when something broke.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db.memory import MemoryHit
from db.repo import Conversation, claim_event, finish_event
from handlers.feedback import feedback_blocks
from handlers.qa import Answer, PendingAnswer, Question, Readers
from handlers.services import Services
from handlers.streaming import set_status, stream_answer
from handlers.text import strip_mention
from handlers.thread import ThreadMessage
from handlers.tools import SlackHistory

log = logging.getLogger(__name__)

FAILURE_REPLY = "Sorry, something went wrong while I was answering. Please try again in a moment."
THREAD_FETCH_LIMIT = 100


@dataclass(frozen=True)
class SlackAsk:
    """A question as it arrived from Slack, before Ember looked anything up."""

    workspace_id: str
    channel_id: str
    channel_type: str
    user_id: str
    text: str
    ts: str | None
    # Where to answer; None answers top-level (a DM that is not in a thread).
    reply_thread_ts: str | None
    source: str
    event_id: str | None = None


def answer_and_post(services: Services, client: WebClient, ask: SlackAsk, *, bot_user_id: str | None) -> None:
    if ask.event_id and not _claim(services, ask.event_id):
        log.info("event %s is already answered or being answered; not answering again", ask.event_id)
        return
    try:
        question = Question(
            conversation=Conversation(ask.workspace_id, ask.channel_id, ask.channel_type, ask.reply_thread_ts),
            user_id=ask.user_id,
            text=ask.text,
            source=ask.source,
            question_ts=ask.ts,
            thread=fetch_thread(client, ask, bot_user_id=bot_user_id),
        )
        tell_if_busy(services, client, ask)
        if ask.channel_type == "im" and ask.reply_thread_ts:
            set_status(client, ask.channel_id, ask.reply_thread_ts, "is thinking…")
        readers = Readers(
            thread=lambda: question.thread,
            history=SlackHistory(client, bot_user_id=bot_user_id),
            channel_type=functools.partial(services.channel_type, client),
        )
        pending = services.qa.start(question, readers=readers)
    except Exception:
        log.exception("answering %s in %s failed", ask.event_id or ask.ts, ask.channel_id)
        _finish(services, ask.event_id, ok=False)
        _tell_failure(client, ask)
        return
    try:
        answer, ts = _stream(services, client, ask, pending)
        services.qa.remember(question, answer, answer_ts=ts, tool_calls=pending.tool_calls)
    except Exception:
        # stream_answer has already replaced the partial answer with FAILURE_REPLY.
        log.exception("answering %s in %s failed", ask.event_id or ask.ts, ask.channel_id)
        _finish(services, ask.event_id, ok=False)
        return
    _finish(services, ask.event_id, ok=True)


def _stream(services: Services, client: WebClient, ask: SlackAsk, pending: PendingAnswer) -> tuple[Answer, str]:
    """Stream the answer into the thread as it is generated; return the final answer and where it landed."""
    final: list[Answer] = []

    def final_text() -> str:
        final.append(pending.result())
        return final[0].text + citations(client, pending.sources)

    posted = stream_answer(
        client,
        pending.deltas,
        channel=ask.channel_id,
        thread_ts=ask.reply_thread_ts,
        recipient_team_id=ask.workspace_id or None,
        recipient_user_id=ask.user_id,
        support=services.streaming,
        team_id=ask.workspace_id,
        final_text=final_text,
        blocks=feedback_blocks(ask.ts or ""),
        error_text=FAILURE_REPLY,
        update_interval=services.stream_interval,
    )
    return final[0], posted.ts


def citations(client: WebClient, sources: Sequence[MemoryHit]) -> str:
    """A Markdown line linking the remembered messages an answer drew on ("" when there were none)."""
    links = []
    for number, hit in enumerate(sources, start=1):
        label = f"{number}: {hit.kind}"
        if hit.source_ts is None:
            links.append(label)
            continue
        try:
            url = client.chat_getPermalink(channel=hit.channel_id, message_ts=hit.source_ts)["permalink"]
        except SlackApiError:
            links.append(label)
            continue
        links.append(f"[{label}]({url})")
    return f"\n\n_Drawn on: {' · '.join(links)}_" if links else ""


def tell_if_busy(services: Services, client: WebClient, ask: SlackAsk) -> None:
    """Over the configured queue depth, the asker hears at once that they wait, and where they stand."""
    depth = services.qa.engine.queue_depth
    if not services.max_queue or depth < services.max_queue:
        return
    try:
        client.chat_postEphemeral(
            channel=ask.channel_id,
            user=ask.user_id,
            thread_ts=ask.reply_thread_ts,
            text=f"I'm busy right now: your question is queued (position {depth + 1}). I'll answer here shortly.",
        )
    except SlackApiError as exc:
        log.warning("could not tell %s they are queued: %s", ask.user_id, exc.response.get("error"))


def fetch_thread(client: WebClient, ask: SlackAsk, *, bot_user_id: str | None) -> list[ThreadMessage]:
    """The thread's earlier messages, from Slack; an empty list if Slack will not say."""
    if ask.reply_thread_ts is None or ask.reply_thread_ts == ask.ts:
        return []
    try:
        response = client.conversations_replies(
            channel=ask.channel_id, ts=ask.reply_thread_ts, limit=THREAD_FETCH_LIMIT
        )
    except SlackApiError as exc:
        log.warning("conversations.replies failed: %s; answering from stored turns only", exc.response.get("error"))
        return []
    messages: list[dict[str, Any]] = response.get("messages") or []
    return [
        ThreadMessage(
            ts=str(message.get("ts", "")),
            user_id=message.get("user"),
            text=strip_mention(str(message.get("text", "")), bot_user_id),
            from_ember=bool(bot_user_id) and message.get("user") == bot_user_id,
        )
        for message in messages
    ]


def _claim(services: Services, event_id: str) -> bool:
    with services.db.session() as session:
        return claim_event(session, event_id=event_id, lease=services.event_lease)


def claim_once(services: Services, event_id: str) -> bool:
    """Claim an event whose handling is a single quick step: it is done as soon as it is claimed."""
    if not _claim(services, event_id):
        return False
    _finish(services, event_id, ok=True)
    return True


def _finish(services: Services, event_id: str | None, *, ok: bool) -> None:
    if event_id is None:
        return
    try:
        with services.db.session() as session:
            finish_event(session, event_id=event_id, ok=ok)
    except Exception:
        log.exception("could not record the outcome of event %s", event_id)


def _tell_failure(client: WebClient, ask: SlackAsk) -> None:
    try:
        client.chat_postMessage(channel=ask.channel_id, thread_ts=ask.reply_thread_ts, text=FAILURE_REPLY)
    except SlackApiError:
        log.exception("could not tell %s that answering failed", ask.user_id)
