"""The QA handler: from a question and where it was asked to an answer, with no Slack in sight.

Slack listeners, `ember ask` and `ember chat` all come through here, so every surface builds the
same context, fits the same budget and remembers the same way. Every answer is an agent run
(handlers.qa.agent): a model that cannot take tools answers in one streamed call, one that can may
look things up first; either way the surface reads the same events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from db import Database
from db.repo import conversation_turns, record_turn, store_tool_calls
from db.schema import Turn
from db.search import MemoryHit
from db.visibility import Audience
from handlers.qa.agent import Agent, AgentEvent, AgentResult, FinalAnswer, TextDelta, ToolCallRecord, ToolStep
from handlers.qa.history import merge_history
from handlers.qa.prompt import rag_messages
from handlers.qa.recall import Recall
from handlers.qa.tools import build_toolbox
from handlers.qa.types import Answer, Question, Readers
from models.base import LLM, Completion

EMPTY_ANSWER = "I don't have an answer to that. Could you rephrase the question?"
HISTORY_TURNS = 20


class PendingAnswer:
    """An answer being generated: iterate `deltas()` to stream its text (tool steps go to `on_step`),
    then `result()` gives the final answer."""

    def __init__(
        self,
        events: Iterator[AgentEvent],
        *,
        started: float,
        observer: Callable[[Completion], None] | None = None,
        sources: tuple[MemoryHit, ...] = (),
    ) -> None:
        self._events = events
        self._started = started
        self._observer = observer
        self.sources = sources
        self._result: AgentResult | None = None
        self._began = False  # the answer's first visible character was streamed
        self._space = ""  # trailing whitespace held back

    def deltas(self, on_step: Callable[[ToolStep], None] | None = None) -> Iterator[str]:
        """The answer's text as it is written, without the whitespace around it (held back until more
        text follows), so that what streams is exactly the final answer's text. Iterating again
        continues where the last one stopped."""
        for event in self._events:
            if isinstance(event, TextDelta):
                text = self._space + event.text
                if not self._began:
                    text = text.lstrip()
                body = text.rstrip()
                self._space = text[len(body) :]
                if body:
                    self._began = True
                    yield body
            elif isinstance(event, ToolStep):
                if on_step is not None:
                    on_step(event)
            elif isinstance(event, FinalAnswer):
                self._result = event.result

    @property
    def tool_calls(self) -> tuple[ToolCallRecord, ...]:
        return tuple(self._result.tool_calls) if self._result is not None else ()

    def result(self) -> Answer:
        for _ in self.deltas():  # finish reading if the caller did not
            pass
        if self._result is None:
            raise RuntimeError("the answer ended without a result")
        answer = finish_answer(self._result, self._started)
        if self._observer is not None:
            self._observer(_as_completion(self._result, answer))
        return answer


def finish_answer(result: AgentResult, started: float) -> Answer:
    """The answer as posted: the model's text, or a fallback, plus what the asker should know."""
    text = result.text.strip() or EMPTY_ANSWER
    prompt = result.prompt
    if prompt.question_cut:
        text += (
            f"\n\n_(Your message was {prompt.question_chars:,} characters, more than I can read at once; "
            f"I answered the first {prompt.question_chars_kept:,}.)_"
        )
    if result.stopped_by == "deadline":
        text += "\n\n_(I ran out of time and stopped here.)_"
    return Answer(
        text=text,
        model_version=result.model_version,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_ms=round((time.perf_counter() - started) * 1000),
    )


def _as_completion(result: AgentResult, answer: Answer) -> Completion:
    """One answer's figures for the metrics, however many model calls it took."""
    return Completion(
        text=answer.text,
        model_version=answer.model_version,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        seconds=answer.latency_ms / 1000,
        prompt=result.prompt,
        finish_reason=result.finish_reason,
        time_to_first_token=result.time_to_first_token,
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
        """Start answering; nothing is generated until the caller reads the answer's deltas."""
        started = time.perf_counter()
        messages, sources = self.prepare(question)
        events = self._agent(question, readers or Readers()).run_stream(messages)
        return PendingAnswer(events, started=started, observer=self.observer, sources=sources)

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
        )
        return Agent(self.engine, tools, deadline_s=self.answer_timeout or 300.0, max_new_tokens=self.max_new_tokens)

    def answer(self, question: Question) -> Answer:
        return self.start(question).result()

    def build_messages(self, question: Question) -> list[dict[str, str]]:
        return self.prepare(question)[0]

    def prepare(self, question: Question) -> tuple[list[dict[str, str]], tuple[MemoryHit, ...]]:
        """System prompt with what Ember remembers that bears on the question, then the conversation so
        far (stored turns and Slack's thread), then the question; and the memories drawn on."""
        with self.db.session() as session:
            turns = conversation_turns(session, conversation=question.conversation, limit=HISTORY_TURNS)
        history = merge_history(turns, question.thread, skip_ts=question.question_ts)
        messages = [
            {"role": "system", "content": self.system_prompt},
            *history,
            {"role": "user", "content": question.text},
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
                question=question.text,
                question_ts=question.question_ts,
                answer=answer.text,
                answer_ts=answer_ts,
                model_version=answer.model_version,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                latency_ms=answer.latency_ms,
                asked_at=question.asked_at,
            )
            store_tool_calls(session, turn_id=turn.id, calls=tool_calls)
            return turn
