"""The agent: a bounded loop in which the model may call tools before it answers.

Tool calls travel in the model's own chat template. The schemas go to the engine with the messages
(`generate(..., tools=...)`), the engine renders them with `apply_chat_template(messages, tools=...)`
(or sends them to an OpenAI-compatible server), and the model's reply is read in the format that
template teaches: Hermes/Qwen `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks,
or Llama 3.1's bare `{"name": ..., "parameters": {...}}`. Each call goes back into the conversation
as an assistant message with `tool_calls` and one `tool` message per result, which is how HF chat
templates (Qwen2.5's, Llama 3.1's) expect to render them.

Models whose template cannot show tools get retrieval instead: `rag_messages` puts the memories
found for the question into the system prompt, with markers the answer can cite.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from sqlalchemy.orm import Session

from db.schema import ToolCall
from handlers.tools import MAX_RESULT_CHARS, MemoryHitLike, ToolBox, format_hit, tool_error, truncate
from models.base import LLM, Completion

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ChatMessage = dict[str, Any]
StopReason = Literal["answer", "step_limit", "deadline"]

OUT_OF_TIME = "I ran out of time while looking things up, so I have no answer yet. Could you ask again?"
OUT_OF_STEPS = "I looked things up several times but could not put an answer together. Could you narrow the question?"
# A reply asking for more tools than this runs the first ones; the rest are answered with an error.
MAX_CALLS_PER_STEP = 4
RAG_HEADER = (
    "Things you remember from earlier conversations. Use them only if they help, and cite the marker "
    "(like [m12]) of each one you use:"
)
_PROBE_NAME = "ember_probe_tool"
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": _PROBE_NAME,
        "description": "Checks whether the chat template shows tools.",
        "parameters": {"type": "object", "properties": {}},
    },
}


class ToolAwareLLM(Protocol):
    """`LLM.generate` with the `tools=` keyword the agent needs (see models.base for the change)."""

    def generate(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        timeout: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion: ...


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


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    # Why the call could not be read; it is answered with this error instead of being run.
    error: str | None = None


@dataclass(frozen=True)
class ParsedReply:
    content: str  # the text outside any tool call
    calls: list[ParsedCall]


class Agent:
    """Answers one question, calling tools in a loop bounded by steps and by a deadline.

    At most `max_steps` replies may ask for tools. If the model still wants more after that, it is
    asked once more with no tools offered, so that the asker gets an answer built from what the
    tools found (stopped_by "step_limit"); if that reply is empty, the answer says so plainly.
    """

    def __init__(
        self,
        engine: LLM,
        tokenizer: PreTrainedTokenizerBase | None,
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
        self.tokenizer = tokenizer
        self.tools = tools
        self.max_steps = max_steps
        self.deadline_s = deadline_s
        self.max_new_tokens = max_new_tokens
        self.clock = clock
        # Both halves must hold: a template that shows tools, and an engine that passes them to it.
        self.supports_tools = len(tools) > 0 and engine_accepts_tools(engine) and template_supports_tools(tokenizer)

    def run(self, messages: Sequence[Mapping[str, Any]]) -> AgentResult:
        run = _Run(self, messages)
        if not self.supports_tools:
            return self._answer_plainly(run)
        for _ in range(self.max_steps):
            completion = run.ask(offer_tools=True)
            if completion is None:
                return run.result(OUT_OF_TIME, "deadline")
            reply = parse_tool_calls(completion.text, known=self.tools.names)
            if completion.finish_reason == "deadline":
                return run.result(reply.content or OUT_OF_TIME, "deadline")
            if not reply.calls:
                return run.result(reply.content, "answer")
            run.use_tools(reply)
        return self._wrap_up(run)

    def _wrap_up(self, run: _Run) -> AgentResult:
        """Out of tool rounds: one last reply, with no tools offered, from what the tools found."""
        completion = run.ask(offer_tools=False)
        if completion is None:
            return run.result(OUT_OF_TIME, "deadline")
        # A model that still writes a tool call gets it dropped: nothing would run it now.
        text = parse_tool_calls(completion.text, known=self.tools.names).content
        stopped_by: StopReason = "deadline" if completion.finish_reason == "deadline" else "step_limit"
        return run.result(text or OUT_OF_STEPS, stopped_by)

    def _answer_plainly(self, run: _Run) -> AgentResult:
        completion = run.ask(offer_tools=False)
        if completion is None:
            return run.result(OUT_OF_TIME, "deadline")
        return run.result(completion.text.strip(), "deadline" if completion.finish_reason == "deadline" else "answer")


class _Run:
    """The state of one `Agent.run`: the growing conversation, the calls made, the time left."""

    def __init__(self, agent: Agent, messages: Sequence[Mapping[str, Any]]) -> None:
        self.agent = agent
        self.conversation: list[ChatMessage] = [dict(m) for m in messages]
        self.records: list[ToolCallRecord] = []
        self.completions: list[Completion] = []
        self.deadline = agent.clock() + agent.deadline_s

    def ask(self, *, offer_tools: bool) -> Completion | None:
        """One model call with what time is left; None when none is."""
        remaining = self.deadline - self.agent.clock()
        if remaining <= 0:
            return None
        # The cast is the interface change in models/: LLM.generate takes `tools=`. Without tools the
        # call is the plain protocol's (extra message keys aside), so any engine can take it.
        engine = cast(ToolAwareLLM, self.agent.engine)
        limit = self.agent.max_new_tokens
        if offer_tools:
            tools = self.agent.tools.schemas()
            completion = engine.generate(self.conversation, max_new_tokens=limit, timeout=remaining, tools=tools)
        else:
            completion = engine.generate(self.conversation, max_new_tokens=limit, timeout=remaining)
        self.completions.append(completion)
        return completion

    def use_tools(self, reply: ParsedReply) -> None:
        step = len(self.completions)
        calls = [(f"call_{step}_{index}", call) for index, call in enumerate(reply.calls)]
        self.conversation.append(assistant_tool_message(reply.content, calls))
        for index, (call_id, call) in enumerate(calls):
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
        return AgentResult(
            text=text.strip(),
            tool_calls=list(self.records),
            steps=len(self.completions),
            stopped_by=stopped_by,
            model_version=last.model_version if last else self.agent.engine.version,
            prompt_tokens=last.prompt_tokens if last else 0,
            completion_tokens=sum(c.completion_tokens for c in self.completions),
            messages=list(self.conversation),
        )


def assistant_tool_message(content: str, calls: Sequence[tuple[str, ParsedCall]]) -> ChatMessage:
    """The model's tool-calling turn, in the OpenAI shape HF templates render.

    `arguments` stays a dict: Qwen2.5's template writes `arguments | tojson`, so a JSON string would
    come out quoted twice. (An OpenAI-compatible server wants a string there; its backend converts.)
    """
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call_id, call in calls
        ],
    }


# -- reading tool calls -----------------------------------------------------------------------------

# An unclosed block is still read: generation may stop at the length limit inside one.
_HERMES_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_tool_calls(text: str, *, known: Collection[str] = ()) -> ParsedReply:
    """The tool calls in a model's reply, and the text around them.

    Hermes/Qwen `<tool_call>` blocks are always calls. A reply that is nothing but a JSON object is
    read as a Llama 3.1 call only when it names a known tool, so an answer that happens to be JSON
    stays an answer.
    """
    if "<tool_call>" in text:
        calls = [_hermes_call(body) for body in _HERMES_CALL.findall(text)]
        content = _HERMES_CALL.sub("", text).replace("</tool_call>", "")
        return ParsedReply(content.strip(), calls)
    call = _bare_json_call(text, known)
    if call is not None:
        return ParsedReply("", [call])
    return ParsedReply(text.strip(), [])


def _hermes_call(body: str) -> ParsedCall:
    try:
        data = json.loads(body.strip())
    except json.JSONDecodeError:
        found = _NAME.search(body)
        return ParsedCall(found.group(1) if found else "", {}, error="the tool call is not valid JSON")
    return _call_from(data) or ParsedCall("", {}, error='a tool call needs {"name": ..., "arguments": {...}}')


def _bare_json_call(text: str, known: Collection[str]) -> ParsedCall | None:
    body = text.strip().removeprefix("<|python_tag|>").strip()
    fenced = _FENCE.match(body)
    body = fenced.group(1) if fenced else body
    if not (body.startswith("{") and body.endswith("}")):
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not ({"parameters", "arguments"} & data.keys()):
        return None
    call = _call_from(data)
    return call if call is not None and call.name in known else None


def _call_from(data: Any) -> ParsedCall | None:
    if isinstance(data, dict) and isinstance(data.get("function"), dict):
        data = data["function"]  # the OpenAI shape, which some fine-tunes write
    if not isinstance(data, dict):
        return None
    name = data.get("name")
    arguments = data.get("arguments", data.get("parameters")) or {}
    if isinstance(arguments, str):  # arguments given as a JSON string, OpenAI style
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return ParsedCall(str(name or ""), {}, error="the tool call's arguments are not valid JSON")
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    return ParsedCall(name, arguments)


# -- what the model and engine can do ---------------------------------------------------------------


def template_supports_tools(tokenizer: PreTrainedTokenizerBase | None) -> bool:
    """Whether the chat template shows tools: render one and look for its name.

    Asking the template itself beats looking for words in its text: a template that mentions
    "tools" may still drop them, and one that shows them may call them something else.
    """
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return False
    try:
        rendered: Any = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}], tools=[_PROBE_TOOL], add_generation_prompt=True, tokenize=False
        )
    except Exception:
        # Templates raise what they like (jinja errors, raise_exception(...)): any failure means no tools.
        log.debug("chat template cannot render tools", exc_info=True)
        return False
    return isinstance(rendered, str) and _PROBE_NAME in rendered


def engine_accepts_tools(engine: LLM) -> bool:
    """Whether this engine's `generate` takes `tools=` (the models/ change; older engines do not)."""
    try:
        parameters = inspect.signature(engine.generate).parameters
    except (TypeError, ValueError):
        return False
    return "tools" in parameters


# -- retrieval for models without tools -------------------------------------------------------------


def rag_messages(messages: Sequence[Mapping[str, str]], hits: Sequence[MemoryHitLike]) -> list[dict[str, str]]:
    """`messages` with the retrieved memories added to the system prompt, each with its [mN] marker."""
    copied = [dict(m) for m in messages]
    if not hits:
        return copied
    block = truncate(RAG_HEADER + "\n" + "\n".join(format_hit(hit) for hit in hits), MAX_RESULT_CHARS)
    if copied and copied[0].get("role") == "system":
        copied[0]["content"] = f"{copied[0]['content']}\n\n{block}"
        return copied
    return [{"role": "system", "content": block}, *copied]


def cited_memories(text: str, hits: Sequence[MemoryHitLike]) -> list[MemoryHitLike]:
    """The hits an answer cites by marker, in the order given, so the caller can link their sources."""
    return [hit for hit in hits if f"[m{hit.memory_id}]" in text]


# -- storing --------------------------------------------------------------------------------------


def store_tool_calls(session: Session, *, turn_id: int, calls: Sequence[ToolCallRecord]) -> list[ToolCall]:
    rows = [
        ToolCall(
            turn_id=turn_id,
            step=call.step,
            name=call.name[:64],  # the column's width; a model may invent a long name
            arguments=json.dumps(call.arguments, ensure_ascii=False, sort_keys=True),
            result=call.result,
        )
        for call in calls
    ]
    session.add_all(rows)
    session.flush()
    return rows
