"""The QA handler: from a question and where it was asked to an answer, with no Slack in sight.

Slack listeners, `ember ask` and `ember chat` all come through here, so every surface builds the
same context, fits the same budget and remembers the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from db import Database
from db.memory import MemoryHit
from db.repo import Conversation, conversation_turns, record_turn
from db.schema import Turn, utcnow
from db.visibility import Audience
from handlers.agent import Agent, AgentResult, ToolCallRecord, rag_messages, store_tool_calls
from handlers.recall import Recall
from handlers.redact import redact
from handlers.thread import ThreadMessage
from handlers.tools import build_toolbox
from models.base import LLM, Completion, PromptInfo, TokenStream

EMPTY_ANSWER = "I don't have an answer to that. Could you rephrase the question?"
HISTORY_TURNS = 20


@dataclass(frozen=True)
class Question:
    conversation: Conversation
    user_id: str
    text: str
    source: str
    question_ts: str | None = None
    thread: Sequence[ThreadMessage] = ()
    asked_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Answer:
    text: str
    model_version: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int


@dataclass(frozen=True)
class Readers:
    """What the agent's tools may read from Slack for one question (none in a terminal)."""

    thread: Callable[[], Sequence[ThreadMessage]] | None = None
    history: Callable[[str, int], Sequence[ThreadMessage]] | None = None
    channel_type: Callable[[str], str] | None = None


class FinishedStream:
    """An answer the agent already has whole, behind the same interface as a streaming one."""

    def __init__(self, result: AgentResult, prompt: PromptInfo) -> None:
        self._completion = Completion(
            text=result.text,
            model_version=result.model_version,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            seconds=0.0,
            prompt=prompt,
            finish_reason="deadline" if result.stopped_by == "deadline" else "stop",
        )
        self._pending = [result.text] if result.text else []

    def __iter__(self) -> Iterator[str]:
        while self._pending:
            yield self._pending.pop()

    def cancel(self) -> None:
        self._pending.clear()

    @property
    def completion(self) -> Completion:
        return self._completion


class PendingAnswer:
    """An answer being generated: iterate `deltas` to stream it, then `result()` gives the final answer."""

    def __init__(
        self,
        stream: TokenStream,
        started: float,
        observer: Callable[[Completion], None] | None = None,
        sources: tuple[MemoryHit, ...] = (),
        tool_calls: tuple[ToolCallRecord, ...] = (),
    ) -> None:
        self.stream = stream
        self._started = started
        self._observer = observer
        self.sources = sources
        self.tool_calls = tool_calls

    @property
    def deltas(self) -> TokenStream:
        return self.stream

    def cancel(self) -> None:
        self.stream.cancel()

    def result(self) -> Answer:
        for _ in self.stream:  # finish reading if the caller did not (a finished stream yields nothing)
            pass
        completion = self.stream.completion
        if self._observer is not None:
            self._observer(completion)
        return finish_answer(completion, self._started)


def finish_answer(completion: Completion, started: float) -> Answer:
    """The answer as posted: the model's text, or a fallback, plus what the asker should know."""
    text = completion.text.strip() or EMPTY_ANSWER
    prompt = completion.prompt
    if prompt.question_cut:
        text += (
            f"\n\n_(Your message was {prompt.question_chars:,} characters, more than I can read at once; "
            f"I answered the first {prompt.question_chars_kept:,}.)_"
        )
    if completion.finish_reason == "deadline":
        text += "\n\n_(I ran out of time and stopped here.)_"
    return Answer(
        text=text,
        model_version=completion.model_version,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_ms=round((time.perf_counter() - started) * 1000),
    )


class QAHandler:
    def __init__(
        self,
        *,
        db: Database,
        engine: LLM,
        system_prompt: str,
        max_new_tokens: int,
        answer_timeout: float | None = None,
        observer: Callable[[Completion], None] | None = None,
        recall: Recall | None = None,
    ) -> None:
        self.observer = observer
        self.recall = recall
        self.db = db
        self.engine = engine
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.answer_timeout = answer_timeout

    def start(self, question: Question, *, readers: Readers | None = None) -> PendingAnswer:
        """Start answering. With a model whose chat template supports tools, the agent may look things
        up first (the answer then arrives whole); otherwise the answer streams as it is generated."""
        started = time.perf_counter()
        messages, sources = self.prepare(question)
        agent = self._agent(question, readers or Readers())
        if agent.supports_tools:
            result = agent.run(messages)
            finished = FinishedStream(result, PromptInfo(prompt_tokens=result.prompt_tokens))
            return PendingAnswer(finished, started, self.observer, sources, tuple(result.tool_calls))
        stream = self.engine.stream(messages, max_new_tokens=self.max_new_tokens, timeout=self.answer_timeout)
        return PendingAnswer(stream, started, self.observer, sources)

    def _agent(self, question: Question, readers: Readers) -> Agent:
        where = question.conversation
        audience = Audience(where.workspace_id, where.channel_id)
        recall = self.recall
        tools = build_toolbox(
            audience=audience,
            search=(lambda query: recall.search(audience=audience, query=query)) if recall else None,
            thread=readers.thread,
            history=readers.history,
            channel_type=readers.channel_type,
            scrub=redact,
        )
        return Agent(
            self.engine,
            getattr(self.engine, "tokenizer", None),
            tools,
            deadline_s=self.answer_timeout or 300.0,
            max_new_tokens=self.max_new_tokens,
        )

    def answer(self, question: Question) -> Answer:
        return self.start(question).result()

    def build_messages(self, question: Question) -> list[dict[str, str]]:
        return self.prepare(question)[0]

    def prepare(self, question: Question) -> tuple[list[dict[str, str]], tuple[MemoryHit, ...]]:
        """System prompt with what Ember remembers that bears on the question, then the conversation so
        far (stored turns and Slack's thread), then the question; and the memories drawn on."""
        with self.db.session() as session:
            turns = conversation_turns(session, conversation=question.conversation, limit=HISTORY_TURNS)
        history = _merge_history(turns, question.thread, skip_ts=question.question_ts)
        messages = [
            {"role": "system", "content": self.system_prompt},
            *history,
            {"role": "user", "content": redact(question.text)},
        ]
        if self.recall is None:
            return messages, ()
        where = question.conversation
        hits = self.recall.search(audience=Audience(where.workspace_id, where.channel_id), query=question.text)
        return rag_messages(messages, hits), tuple(hits)

    def remember(
        self, question: Question, answer: Answer, *, answer_ts: str | None, tool_calls: Sequence[ToolCallRecord] = ()
    ) -> Turn:
        with self.db.session() as session:
            turn = record_turn(
                session,
                conversation=question.conversation,
                user_id=question.user_id,
                source=question.source,
                question=redact(question.text),
                question_ts=question.question_ts,
                answer=redact(answer.text),
                answer_ts=answer_ts,
                model_version=answer.model_version,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                latency_ms=answer.latency_ms,
                asked_at=question.asked_at,
            )
            store_tool_calls(session, turn_id=turn.id, calls=tool_calls)
            return turn


def _merge_history(
    turns: Sequence[Turn], thread: Sequence[ThreadMessage], *, skip_ts: str | None
) -> list[dict[str, str]]:
    """Interleave stored turns with Slack messages the turns do not already cover, oldest first.

    Stored turns are the memory (they survive Slack's history limits and restarts); Slack's thread
    adds what other people said in between.
    """
    timed: list[tuple[float, int, dict[str, str]]] = []
    covered = {ts for turn in turns for ts in (turn.question_ts, turn.answer_ts) if ts}
    for turn in turns:
        at = _ts(turn.question_ts) if turn.question_ts else _epoch(turn.asked_at)
        timed.append((at, 0, {"role": "user", "content": turn.question}))
        timed.append((at, 1, {"role": "assistant", "content": turn.answer}))
    for message in thread:
        if message.ts in covered or message.ts == skip_ts or not message.text.strip():
            continue
        role = "assistant" if message.from_ember else "user"
        text = redact(message.text)
        content = text if message.from_ember or not message.user_id else f"<@{message.user_id}>: {text}"
        timed.append((_ts(message.ts), 0, {"role": role, "content": content}))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in timed]


def _epoch(moment: datetime) -> float:
    # SQLite hands datetimes back without their zone; Ember stores UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _ts(ts: str) -> float:
    try:
        return float(ts)
    except ValueError:
        return 0.0
