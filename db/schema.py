"""The tables. Alembic owns the schema in a database; this module is its typed picture."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Turn(Base):
    """One question and the answer Ember gave, with where it was asked and what answered it."""

    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    # "channel" (public), "group" (private), "im", "mpim", or "terminal" for `ember chat`/`ember ask`.
    channel_type: Mapped[str] = mapped_column(String(16))
    # The Slack thread this turn belongs to; None for a top-level DM conversation.
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))  # mention, dm, command, cli
    question: Mapped[str] = mapped_column(Text)
    question_ts: Mapped[str | None] = mapped_column(String(32))
    answer: Mapped[str] = mapped_column(Text)
    # Where the answer was posted, so later feedback (buttons, reactions) finds its turn.
    answer_ts: Mapped[str | None] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer)
    asked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ix_turns_conversation", "workspace_id", "channel_id", "thread_ts", "id"),
        Index("ix_turns_answer", "channel_id", "answer_ts"),
    )


class HandledEvent(Base):
    """A Slack event Ember has taken on, so that Slack's retries never produce a second answer."""

    __tablename__ = "handled_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "claimed" while being answered, "done" once answered, "failed" if answering raised.
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # A claim older than this may be taken over by a retry: the worker that held it died.
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The process answering it (an `Instance`); when that process stops beating, another takes over.
    owner: Mapped[str | None] = mapped_column(String(128))
    # What is needed to answer it again: the event's envelope as JSON. Cleared once it is settled.
    work: Mapped[str | None] = mapped_column(Text)
    # Messages already posted for it (a JSON list of ts), so a takeover can clear a half-written answer.
    replies: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_handled_events_owner", "status", "owner"),)


class Instance(Base):
    """A running Ember process, alive while its heartbeat is fresh (see db.claims)."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Memory(Base):
    """Something Ember may recall in a later conversation: a pinned fact, a correction, or a turn
    that got good feedback. Who may recall it is decided by db.visibility, from where it was said."""

    __tablename__ = "memories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    channel_type: Mapped[str] = mapped_column(String(16))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # fact, correction, turn
    # What is searched and shown to the model (secrets already redacted).
    text: Mapped[str] = mapped_column(Text)
    # For corrections and turns: the question this memory answers.
    question: Mapped[str | None] = mapped_column(Text)
    # The Slack message it came from, for citations (permalinks).
    source_ts: Mapped[str | None] = mapped_column(String(32))
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    # Normalised float32 vector (little-endian bytes) and the model that made it.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_memories_scope", "workspace_id", "channel_type", "channel_id"),)


class ToolCall(Base):
    """One tool the agent ran while answering a turn, with what it returned."""

    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(Text)  # JSON
    result: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Vote(Base):
    """One person's feedback on one answer; a later vote by the same person replaces it."""

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(Integer)  # +1 up, -1 down
    # A better answer the voter suggested ("Suggest a better answer"), redacted.
    correction: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # button, reaction, modal
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ux_votes_turn_user", "turn_id", "user_id", unique=True),)


class ModelVersion(Base):
    """A set of weights Ember can serve: the base model, or a fine-tune of it (a versioned directory)."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(200), unique=True)
    path: Mapped[str] = mapped_column(Text)
    parent: Mapped[str | None] = mapped_column(String(200))
    # candidate -> active | rejected; an active version that was replaced becomes retired.
    status: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[str | None] = mapped_column(Text)  # JSON: the eval gate's figures
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TrainingRun(Base):
    """One nightly (or `ember train`) run: what it learned from, how it went, what became of it."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # running, promoted, rejected, skipped, failed
    base_version: Mapped[str] = mapped_column(String(200))
    candidate_version: Mapped[str | None] = mapped_column(String(200))
    examples: Mapped[int] = mapped_column(Integer, default=0)
    desirable: Mapped[int] = mapped_column(Integer, default=0)
    undesirable: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column()
    detail: Mapped[str | None] = mapped_column(Text)  # JSON: eval figures, or the error
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DigestSubscription(Base):
    """A scheduled digest: of one channel, posted there, or a personal recap sent to one person by DM.

    The table is the source of truth for schedules; the scheduler's jobs (`digest:<id>`) are rebuilt
    from it at start-up and whenever it changes."""

    __tablename__ = "digest_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # channel, personal
    # The channel a channel digest covers and is posted in; for a personal recap, where it was asked for.
    channel_id: Mapped[str] = mapped_column(String(32))
    channel_type: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(32))  # who subscribed (a recap's recipient)
    cron: Mapped[str] = mapped_column(String(100))  # 5 crontab fields, or 6 with seconds first
    timezone: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(100))  # what the person asked for, e.g. "daily 09:00"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_digest_subscriptions_place", "workspace_id", "channel_id"),)


class DigestRun(Base):
    """One window of one subscription, claimed before it is collected: the unique (subscription, window
    start) is what keeps a restart, a second replica or a re-run from posting a window twice. On-demand
    catch-ups (`/ember digest now`) are recorded too, without a subscription."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("digest_subscriptions.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # claimed -> posted | quiet | failed; a failed or long-abandoned claim may be claimed again.
    status: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where the headline was posted, so feedback on it finds this run.
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    messages: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)  # JSON: prompts, tokens, dropped references, or the error

    __table_args__ = (
        Index("ux_digest_runs_window", "subscription_id", "window_start", unique=True),
        Index("ix_digest_runs_message", "channel_id", "message_ts"),
    )


class DigestVote(Base):
    """Feedback on a digest. Kept apart from answer votes: a digest is not an answer to a question, so
    it has no place in the answer training set."""

    __tablename__ = "digest_votes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("digest_runs.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(Integer)  # +1 up, -1 down
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ux_digest_votes_run_user", "run_id", "user_id", unique=True),)


class AssistantThread(Base):
    """A thread in Ember's assistant pane: whose it is, which channel they were looking at (Slack's
    thread context), and whether its title was set. Bolt's default store would keep the context in
    the thread's first message instead, reading and rewriting it on every lookup."""

    __tablename__ = "assistant_threads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))  # the person's DM with Ember
    thread_ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    context_channel_id: Mapped[str | None] = mapped_column(String(32))
    titled: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ux_assistant_threads_thread", "channel_id", "thread_ts", unique=True),)


class AgentContext(Base):
    """What a person is looking at beside Ember's agent view (Slack's app_context_changed): the
    channel a "Catch me up" prompt offers. One row a person, replaced on every change."""

    __tablename__ = "agent_contexts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ux_agent_contexts_user", "workspace_id", "user_id", unique=True),)
