"""The one path every answer takes in Slack, whichever surface asked: context, answer, stream, remember.

Mentions, DMs and `/ember ask` all come here with a `SlackAsk` and a `ReplyTarget`, so every
answer streams, cites the memories it drew on, carries feedback buttons whose vote finds its turn,
and shows the agent's tool steps as the thread's status. It runs off the ack path: the listener
claims the Slack event (so a redelivery never answers twice) and hands the answer to the bot's
answer pool, so Bolt's listener threads stay free to ack clicks within Slack's 3 s. It tells the
asker when something broke.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db.claims import attempts, clear_replies, finish_event, note_reply, posted_replies, replies_of_claims
from db.repo import answered_by, turn_by_question
from db.search import MemoryHit
from handlers.qa.agent import ToolStep
from handlers.qa.handler import PendingAnswer
from handlers.qa.types import Answer, Readers
from handlers.slack.asks import SlackAsk
from handlers.slack.feedback import feedback_blocks
from handlers.slack.readers import SlackHistory, fetch_thread
from handlers.slack.services import Services
from handlers.slack.streaming import PostedAnswer, set_status, stream_answer
from handlers.slack.writers import Respond

log = logging.getLogger(__name__)

FAILURE_REPLY = "Sorry, something went wrong while I was answering. Please try again in a moment."
THINKING = "is thinking…"
# What the thread's status says while a tool runs.
TOOL_STATUS = {
    "search_memory": "is searching memory…",
    "read_thread": "is reading the thread…",
    "read_channel": "is reading the channel…",
    "current_time": "is checking the time…",
}


@dataclass(frozen=True)
class ReplyTarget:
    """Where an answer goes: a thread (or a DM's top level), or a slash command's channel."""

    channel_id: str
    thread_ts: str | None
    # Shown above the answer: a slash command's answer is top-level, so it says what was asked.
    heading: str = ""
    # A slash command's response_url, for a channel Ember may not post in.
    respond: Respond | None = None
    # The posted answer starts a thread that continues this conversation (a slash command's answer).
    opens_thread: bool = False

    @classmethod
    def replying_to(cls, ask: SlackAsk) -> ReplyTarget:
        return cls(ask.channel_id, ask.reply_thread_ts)

    @classmethod
    def for_command(cls, ask: SlackAsk, respond: Respond) -> ReplyTarget:
        return cls(
            ask.channel_id,
            None,
            heading=f"<@{ask.user_id}> asked: _{ask.text}_\n\n",
            respond=respond,
            opens_thread=True,
        )


def answer_and_post(
    services: Services, client: WebClient, ask: SlackAsk, *, bot_user_id: str | None, target: ReplyTarget | None = None
) -> None:
    """Answer `ask` in the answer pool; Bolt's listener thread is free again at once. An event's claim
    was taken before its ack (handlers.slack.claims); this settles it."""
    target = target or ReplyTarget.replying_to(ask)
    services.in_background(lambda: _answer_claimed(services, client, ask, target, bot_user_id))


def _answer_claimed(
    services: Services, client: WebClient, ask: SlackAsk, target: ReplyTarget, bot_user_id: str | None
) -> None:
    if ask.event_id and not _clear_earlier_attempt(services, client, ask, bot_user_id):
        return
    try:
        thread = fetch_thread(client, ask.channel_id, ask.reply_thread_ts, skip_ts=ask.ts, bot_user_id=bot_user_id)
        question = ask.question(thread)
        if ask.source != "command":  # a command's ack already said where it stands in the queue
            tell_if_busy(services, client, ask)
        if ask.channel_type == "im" and ask.reply_thread_ts:
            set_status(client, ask.channel_id, ask.reply_thread_ts, THINKING)
        readers = Readers(
            thread=lambda: question.thread,
            history=SlackHistory(client, bot_user_id=bot_user_id),
            channel_type=functools.partial(services.channel_type, client),
        )
        pending = services.qa.start(question, readers=readers)
    except Exception:
        log.exception("answering %s in %s failed", ask.event_id or ask.ts, ask.channel_id)
        _finish(services, ask.event_id, ok=False)
        _tell_failure(client, target)
        return
    try:
        answer, posted = _write(services, client, ask, target, pending)
        if target.opens_thread and posted.ts is not None:
            question = dataclasses.replace(
                question, conversation=dataclasses.replace(question.conversation, thread_ts=posted.ts)
            )
        services.qa.remember(question, answer, answer_ts=posted.ts, tool_calls=pending.tool_calls)
    except Exception:
        # stream_answer has already replaced the partial answer with FAILURE_REPLY.
        log.exception("answering %s in %s failed", ask.event_id or ask.ts, ask.channel_id)
        _finish(services, ask.event_id, ok=False)
        return
    _finish(services, ask.event_id, ok=True)


def _write(
    services: Services, client: WebClient, ask: SlackAsk, target: ReplyTarget, pending: PendingAnswer
) -> tuple[Answer, PostedAnswer]:
    """Stream the answer as it is generated; return the final answer and what it became in Slack."""
    final: list[Answer] = []

    def final_text() -> str:
        final.append(pending.result())
        return target.heading + final[0].text + citations(client, pending.sources)

    deltas = pending.deltas(on_step=_show_step(client, target))
    posted = stream_answer(
        client,
        _headed(target.heading, deltas),
        channel=target.channel_id,
        thread_ts=target.thread_ts,
        recipient_team_id=ask.workspace_id or None,
        recipient_user_id=ask.user_id,
        support=services.streaming,
        team_id=ask.workspace_id,
        final_text=final_text,
        blocks=feedback_blocks(ask.ts or ""),
        error_text=FAILURE_REPLY,
        update_interval=services.stream_interval,
        respond=target.respond,
        on_posted=_noting(services, ask.event_id),
    )
    return final[0], posted


def _noting(services: Services, event_id: str | None) -> Callable[[str], None] | None:
    """Keeps each message an event's answer posts on its claim, for a takeover to clear."""
    if event_id is None:
        return None

    def note(ts: str) -> None:
        with services.db.session() as session:
            note_reply(session, event_id=event_id, ts=ts)

    return note


def _clear_earlier_attempt(services: Services, client: WebClient, ask: SlackAsk, bot_user_id: str | None) -> bool:
    """Before answering an event taken over from a process that died: False if that process had
    finished the answer, else True once its half-written messages are gone."""
    assert ask.event_id is not None
    with services.db.session() as session:
        left = posted_replies(session, event_id=ask.event_id)
        answered = (
            bool(left)
            and ask.ts is not None
            and (turn_by_question(session, channel_id=ask.channel_id, question_ts=ask.ts) is not None)
        )
        taken_over = attempts(session, event_id=ask.event_id) > 1
    if answered:
        log.info("event %s was answered before its process died; settling it", ask.event_id)
        _finish(services, ask.event_id, ok=True)
        return False
    if taken_over:
        left = [*left, *(ts for ts in _unnoted_posts(services, client, ask, bot_user_id) if ts not in left)]
    for ts in left:
        try:
            client.chat_delete(channel=ask.channel_id, ts=ts)
        except SlackApiError as exc:
            log.warning("could not remove a half-written answer %s in %s: %s", ts, ask.channel_id, exc)
    if left:
        log.info("event %s: removed %d half-written message(s) of an earlier attempt", ask.event_id, len(left))
        with services.db.session() as session:
            clear_replies(session, event_id=ask.event_id)
    return True


def _unnoted_posts(services: Services, client: WebClient, ask: SlackAsk, bot_user_id: str | None) -> list[str]:
    """Ember's messages in the reply thread after the question that nothing accounts for: a process
    killed between Slack accepting a post and the claim noting it leaves one. Stored answers and
    what other claims in flight noted are left alone."""
    if ask.reply_thread_ts is None or ask.ts is None or bot_user_id is None:
        return []
    try:
        response = client.conversations_replies(channel=ask.channel_id, ts=ask.reply_thread_ts, oldest=ask.ts)
    except SlackApiError as exc:
        log.warning("could not look for half-written answers in %s: %s", ask.channel_id, exc.response.get("error"))
        return []
    messages: list[dict[str, Any]] = response.get("messages") or []
    ours = [
        str(m["ts"])
        for m in messages
        if m.get("user") == bot_user_id
        and isinstance(m.get("ts"), str)
        and float(m["ts"]) > float(ask.ts)
        and m.get("text") != FAILURE_REPLY  # told on purpose by an attempt that failed: it stays
    ]
    with services.db.session() as session:
        kept = answered_by(session, channel_id=ask.channel_id, answer_ts=ours) | replies_of_claims(session)
    return [ts for ts in ours if ts not in kept]


def _headed(heading: str, deltas: Iterator[str]) -> Iterator[str]:
    """The answer's text with the heading in front of its first piece (nothing shows before the model
    has written something)."""
    for delta in deltas:
        yield heading + delta
        break
    yield from deltas


def _show_step(client: WebClient, target: ReplyTarget) -> Callable[[ToolStep], None] | None:
    """Shows each tool step as the thread's status ("is searching memory…"); a top-level answer has
    no thread to show it in."""
    thread_ts = target.thread_ts
    if thread_ts is None:
        return None

    def show(step: ToolStep) -> None:
        set_status(client, target.channel_id, thread_ts, TOOL_STATUS.get(step.name, f"is using {step.name}…"))

    return show


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


def queued_note(services: Services) -> str | None:
    """What an asker hears when their question waits behind others; None when it does not."""
    depth = services.qa.engine.queue_depth
    if not services.max_queue or depth < services.max_queue:
        return None
    return f"I'm busy right now: your question is queued (position {depth + 1})."


def tell_if_busy(services: Services, client: WebClient, ask: SlackAsk) -> None:
    """Over the configured queue depth, the asker hears at once that they wait, and where they stand."""
    note = queued_note(services)
    if note is None:
        return
    try:
        client.chat_postEphemeral(
            channel=ask.channel_id,
            user=ask.user_id,
            thread_ts=ask.reply_thread_ts,
            text=f"{note} I'll answer here shortly.",
        )
    except SlackApiError as exc:
        log.warning("could not tell %s they are queued: %s", ask.user_id, exc.response.get("error"))


def settle(services: Services, event_id: str | None) -> None:
    """An event's claim whose handling was one quick step (a correction, a help reply) is done."""
    _finish(services, event_id, ok=True)


def settle_failed(services: Services, event_id: str | None) -> None:
    """Such a step failed: a redelivery or a takeover may try it again."""
    _finish(services, event_id, ok=False)


def _finish(services: Services, event_id: str | None, *, ok: bool) -> None:
    if event_id is None:
        return
    try:
        with services.db.session() as session:
            finish_event(session, event_id=event_id, ok=ok)
    except Exception:
        log.exception("could not record the outcome of event %s", event_id)


def _tell_failure(client: WebClient, target: ReplyTarget) -> None:
    try:
        if target.respond is not None:
            target.respond(text=FAILURE_REPLY, response_type="ephemeral")
        else:
            client.chat_postMessage(channel=target.channel_id, thread_ts=target.thread_ts, text=FAILURE_REPLY)
    except (SlackApiError, OSError):
        log.exception("could not tell the asker in %s that answering failed", target.channel_id)
