"""The agent: a bounded loop in which the model may call tools before it answers, as typed events.

`Agent.run_stream(messages)` yields what happens as it happens: a `ToolStep` before each tool runs,
`TextDelta`s of the answer while the model writes it, and one `FinalAnswer` at the end. `run()` only
consumes them. A model whose engine cannot take tools (`LLM.supports_tools`) answers in one streamed
call; one that can may ask for tools first, and its last reply streams like any other (text that
opens like a tool call is held back until it is known not to be one: `tool_calls.TextGate`).

Every prompt is redacted here, just before the model sees it (`prompt.redacted`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.qa.prompt import redacted
from handlers.qa.tool_calls import (
    ChatMessage,
    ParsedCall,
    ParsedReply,
    TextGate,
    assistant_tool_message,
    parse_tool_calls,
    server_calls,
)
from handlers.qa.tools import ToolBox, tool_error
from models.base import LLM, Completion, FinishReason, PromptInfo

StopReason = Literal["answer", "step_limit", "deadline"]

OUT_OF_TIME = "I ran out of time while looking things up, so I have no answer yet. Could you ask again?"
OUT_OF_STEPS = "I looked things up several times but could not put an answer together. Could you narrow the question?"
# A reply asking for more tools than this runs the first ones; the rest are answered with an error.
MAX_CALLS_PER_STEP = 4


@dataclass(frozen=True)
class ToolCallRecord:
    step: int
    name: str
    arguments: dict[str, Any]
    result: str


@dataclass(frozen=True)
class AgentResult:
    # The answer; empty when the model said nothing (callers substitute their own fallback).
    text: str
    tool_calls: list[ToolCallRecord]
    # Model calls made, the wrap-up call after the step limit included.
    steps: int
    stopped_by: StopReason
    model_version: str = ""
    # Of the last model call (the largest prompt), and summed over all calls.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The conversation as last sent to the model, tool calls and results included.
    messages: list[ChatMessage] = field(default_factory=list)
    # How the last prompt was fitted into the window (was the question cut?).
    prompt: PromptInfo = field(default_factory=lambda: PromptInfo(prompt_tokens=0))
    # Seconds from the first model call to its first token; None when nothing was generated.
    time_to_first_token: float | None = None
    # How the last model call ended ("stop", "length", "deadline", ...).
    finish_reason: FinishReason = "stop"


# -- the events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolStep:
    """The model asked for a tool; it runs right after this event."""

    step: int
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True)
class FinalAnswer:
    result: AgentResult


AgentEvent = ToolStep | TextDelta | FinalAnswer


class Agent:
    """Answers one question, calling tools in a loop bounded by steps and by a deadline.

    At most `max_steps` replies may ask for tools. If the model still wants more after that, it is
    asked once more with no tools offered, so that the asker gets an answer built from what the
    tools found (stopped_by "step_limit"); if that reply is empty, the answer says so plainly.
    """

    def __init__(
        self,
        engine: LLM,
        tools: ToolBox,
        *,
        max_steps: int = 4,
        deadline_s: float = 60.0,
        max_new_tokens: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, not {max_steps}")
        self.engine = engine
        self.tools = tools
        self.max_steps = max_steps
        self.deadline_s = deadline_s
        self.max_new_tokens = max_new_tokens
        self.clock = clock
        self.supports_tools = len(tools) > 0 and engine.supports_tools

    def run(self, messages: Sequence[Mapping[str, Any]]) -> AgentResult:
        for event in self.run_stream(messages):
            if isinstance(event, FinalAnswer):
                return event.result
        raise AssertionError("run_stream always ends with a FinalAnswer")

    def run_stream(self, messages: Sequence[Mapping[str, Any]]) -> Iterator[AgentEvent]:
        run = _Run(self, messages)
        result = yield from self._loop(run) if self.supports_tools else self._answer_plainly(run)
        yield FinalAnswer(result)

    def _loop(self, run: _Run) -> Generator[AgentEvent, None, AgentResult]:
        for _ in range(self.max_steps):
            completion = yield from run.ask(offer_tools=True)
            if completion is None:
                return run.result(OUT_OF_TIME, "deadline")
            reply = _reply(completion, self.tools.names)
            if completion.finish_reason == "deadline":
                return run.result(reply.content or OUT_OF_TIME, "deadline")
            if not reply.calls:
                return run.result(reply.content, "answer")
            yield from run.use_tools(reply)
        return (yield from self._wrap_up(run))

    def _wrap_up(self, run: _Run) -> Generator[AgentEvent, None, AgentResult]:
        """Out of tool rounds: one last reply, with no tools offered, from what the tools found."""
        completion = yield from run.ask(offer_tools=False, gated=True)
        if completion is None:
            return run.result(OUT_OF_TIME, "deadline")
        # A model that still writes a tool call gets it dropped: nothing would run it now.
        text = parse_tool_calls(completion.text, known=self.tools.names).content
        stopped_by: StopReason = "deadline" if completion.finish_reason == "deadline" else "step_limit"
        return run.result(text or OUT_OF_STEPS, stopped_by)

    def _answer_plainly(self, run: _Run) -> Generator[AgentEvent, None, AgentResult]:
        completion = yield from run.ask(offer_tools=False)
        if completion is None:
            return run.result(OUT_OF_TIME, "deadline")
        return run.result(completion.text.strip(), "deadline" if completion.finish_reason == "deadline" else "answer")


def _reply(completion: Completion, known: Sequence[str]) -> ParsedReply:
    if completion.tool_calls:
        return ParsedReply(completion.text.strip(), server_calls(completion.tool_calls))
    return parse_tool_calls(completion.text, known=known)


class _Run:
    """The state of one run: the growing conversation, the calls made, the time left."""

    def __init__(self, agent: Agent, messages: Sequence[Mapping[str, Any]]) -> None:
        self.agent = agent
        self.conversation: list[ChatMessage] = [dict(m) for m in messages]
        self.records: list[ToolCallRecord] = []
        self.completions: list[Completion] = []
        self.deadline = agent.clock() + agent.deadline_s

    def ask(self, *, offer_tools: bool, gated: bool | None = None) -> Generator[AgentEvent, None, Completion | None]:
        """One streamed model call with what time is left, its text yielded as it comes; None when no
        time is left. With tools offered (or `gated`), text that may be a tool call is held back."""
        remaining = self.deadline - self.agent.clock()
        if remaining <= 0:
            return None
        agent = self.agent
        tools = agent.tools.schemas() if offer_tools else None
        stream = agent.engine.stream(
            redacted(self.conversation), max_new_tokens=agent.max_new_tokens, timeout=remaining, tools=tools
        )
        gate = TextGate(known=agent.tools.names) if (offer_tools if gated is None else gated) else None
        try:
            for delta in stream:
                shown = gate.feed(delta) if gate is not None else delta
                if shown:
                    yield TextDelta(shown)
        except GeneratorExit:
            stream.cancel()  # the reader went away: stop generating for nobody
            raise
        completion = stream.completion
        rest = gate.finish(server_calls=bool(completion.tool_calls)) if gate is not None else ""
        if rest:
            yield TextDelta(rest)
        self.completions.append(completion)
        return completion

    def use_tools(self, reply: ParsedReply) -> Iterator[AgentEvent]:
        step = len(self.completions)
        calls = [(f"call_{step}_{index}", call) for index, call in enumerate(reply.calls)]
        self.conversation.append(assistant_tool_message(reply.content, calls))
        for index, (call_id, call) in enumerate(calls):
            yield ToolStep(step=step, name=call.name, arguments=call.arguments)
            result = self._result_of(call, index)
            self.records.append(ToolCallRecord(step=step, name=call.name, arguments=call.arguments, result=result))
            self.conversation.append({"role": "tool", "tool_call_id": call_id, "name": call.name, "content": result})

    def _result_of(self, call: ParsedCall, index: int) -> str:
        if call.error is not None:
            return tool_error(call.error)
        if index >= MAX_CALLS_PER_STEP:
            return tool_error(f"at most {MAX_CALLS_PER_STEP} tools run at once; ask again for this one")
        return self.agent.tools.call(call.name, call.arguments)

    def result(self, text: str, stopped_by: StopReason) -> AgentResult:
        last = self.completions[-1] if self.completions else None
        first = self.completions[0] if self.completions else None
        return AgentResult(
            text=text.strip(),
            tool_calls=list(self.records),
            steps=len(self.completions),
            stopped_by=stopped_by,
            model_version=last.model_version if last else self.agent.engine.version,
            prompt_tokens=last.prompt_tokens if last else 0,
            completion_tokens=sum(c.completion_tokens for c in self.completions),
            messages=list(self.conversation),
            prompt=last.prompt if last else PromptInfo(prompt_tokens=0),
            time_to_first_token=first.time_to_first_token if first else None,
            finish_reason=last.finish_reason if last else "deadline",
        )
