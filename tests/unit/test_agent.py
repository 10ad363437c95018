"""The agent's tool loop and its tools.

Only the model's choices are scripted (tests/support/scripted.py: replies written in Qwen2.5's
tool-call format); every prompt is rendered by Qwen2.5-Instruct's real chat template, Slack is the local
Slack-compatible server, and tool calls are stored in a real SQLite file.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from slack_sdk import WebClient
from sqlalchemy import select
from transformers import PreTrainedTokenizerBase

from db import Database
from db.repo import Conversation, record_turn, store_tool_calls
from db.schema import ToolCall, utcnow
from db.visibility import Audience
from handlers.qa.agent import OUT_OF_STEPS, OUT_OF_TIME, Agent, FinalAnswer, TextDelta, ToolCallRecord, ToolStep
from handlers.qa.handler import QAHandler
from handlers.qa.prompt import cited_memories, rag_messages
from handlers.qa.tool_calls import TextGate, parse_tool_calls
from handlers.qa.tools import MAX_RESULT_CHARS, ToolBox, build_toolbox, read_channel
from handlers.qa.types import ThreadMessage
from handlers.slack.readers import SlackHistory
from handlers.slack.services import Services
from models.prompt import template_supports_tools
from playground import LocalSlack
from tests.support.chat_templates import QWEN2_5_INSTRUCT
from tests.support.scripted import FakeClock, PlainEngine, ScriptedEngine, ServerCalls, call

WORKSPACE = "T0001"
NOON = datetime(2025, 3, 14, 12, 30, tzinfo=timezone(timedelta(hours=1)))


@dataclass(frozen=True)
class MemoryHit:
    """The shape db.search.search_memories returns; search itself is db.search's to test."""

    memory_id: int
    kind: str
    text: str
    question: str | None
    channel_id: str
    source_ts: str | None
    score: float


VPN_HIT = MemoryHit(
    7,
    "correction",
    "The VPN moved to vpn2.example.com in March.",
    "Where is the VPN?",
    "C0GENERAL",
    "1700000000.000100",
    0.92,
)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The packaged tokenizer (a copy: the session's is shared) with Qwen2.5-Instruct's tool-capable template."""
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = QWEN2_5_INSTRUCT
    return copied


class Searches:
    def __init__(self, hits: Sequence[MemoryHit]) -> None:
        self.hits = list(hits)
        self.queries: list[str] = []

    def __call__(self, query: str) -> list[MemoryHit]:
        self.queries.append(query)
        return self.hits


THREAD = [
    ThreadMessage("1741950000.000100", "U1", "Anyone know where the VPN lives now?", False),
    ThreadMessage("1741950060.000200", None, "Let me look.", True),
]


def toolbox(searches: Searches | None = None) -> ToolBox:
    return build_toolbox(
        audience=Audience(WORKSPACE, "C0HELP"),
        search=searches or Searches([VPN_HIT]),
        thread=lambda: THREAD,
        clock=lambda: NOON,
    )


QUESTION = [
    {"role": "system", "content": "You are Ember, the team's assistant."},
    {"role": "user", "content": "Where is the VPN now?"},
]


# -- the loop -------------------------------------------------------------------------------------


def test_the_loop_runs_the_tools_the_model_asks_for_and_answers(qwen: PreTrainedTokenizerBase) -> None:
    searches = Searches([VPN_HIT])
    engine = ScriptedEngine(
        qwen,
        [
            call("search_memory", query="VPN address"),
            call("read_thread") + "\n" + call("current_time"),  # two calls in one reply
            "The VPN moved to vpn2.example.com [m7].",
        ],
    )
    agent = Agent(engine, toolbox(searches))
    assert agent.supports_tools

    result = agent.run(QUESTION)

    assert result.text == "The VPN moved to vpn2.example.com [m7]."
    assert (result.stopped_by, result.steps) == ("answer", 3)
    assert searches.queries == ["VPN address"]
    assert [(c.step, c.name, c.arguments) for c in result.tool_calls] == [
        (1, "search_memory", {"query": "VPN address"}),
        (2, "read_thread", {}),
        (2, "current_time", {}),
    ]
    search, thread, now = (c.result for c in result.tool_calls)
    assert search.startswith("[m7] correction from <#C0GENERAL>")
    assert "vpn2.example.com" in search
    assert "<@U1>: Anyone know where the VPN lives now?" in thread
    assert "Ember: Let me look." in thread
    assert now == "2025-03-14T12:30:00+01:00 (Friday)"
    assert result.model_version == "scripted-1"
    assert result.completion_tokens > 0


def test_the_run_streams_its_steps_then_the_answer_in_pieces(qwen: PreTrainedTokenizerBase) -> None:
    answer = "The VPN moved to vpn2.example.com [m7] in March."
    engine = ScriptedEngine(qwen, [call("search_memory", query="VPN address"), answer])
    events = list(Agent(engine, toolbox()).run_stream(QUESTION))

    step, *deltas, final = events
    assert step == ToolStep(step=1, name="search_memory", arguments={"query": "VPN address"})
    assert len(deltas) >= 2 and all(isinstance(delta, TextDelta) for delta in deltas)
    assert "".join(delta.text for delta in deltas).strip() == answer
    assert isinstance(final, FinalAnswer) and final.result.text == answer
    assert [c.name for c in final.result.tool_calls] == ["search_memory"]


def test_text_that_may_be_a_tool_call_is_held_until_it_is_known() -> None:
    def shown(*pieces: str) -> tuple[str, str]:
        gate = TextGate(known=["search_memory"])
        streamed = "".join(gate.feed(piece) for piece in pieces)
        return streamed, gate.finish()

    # A call, however it is cut into pieces, never shows.
    assert shown("<tool", '_call>\n{"name": "search_memory", ', '"arguments": {}}\n</tool_call>') == ("", "")
    assert shown('{"name": "search_memory", ', '"parameters": {"query": "vpn"}}') == ("", "")
    # JSON that is not a call is an answer: it shows once it is complete.
    assert shown('{"host": ', '"vpn2"}') == ("", '{"host": "vpn2"}')
    # Prose streams at once, up to a tag that opens a call.
    assert shown("Let me ", "check. <tool_", "call>{}") == ("Let me check. ", "")
    assert shown("Use <tool", "tips> here") == ("Use <tooltips> here", "")


def test_tool_calls_a_server_parsed_itself_run_like_written_ones(qwen: PreTrainedTokenizerBase) -> None:
    parsed = ServerCalls(
        ({"name": "search_memory", "arguments": {"query": "VPN"}}, {"name": "read_thread", "arguments": "{"})
    )
    engine = ScriptedEngine(qwen, [parsed, "vpn2.example.com [m7]"])
    result = Agent(engine, toolbox()).run(QUESTION)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        ("search_memory", {"query": "VPN"}),
        ("read_thread", {}),
    ]
    assert result.tool_calls[0].result.startswith("[m7]")
    assert result.tool_calls[1].result == "error: the tool call's arguments are not valid JSON"
    assert result.text == "vpn2.example.com [m7]"


def test_every_step_is_rendered_by_the_real_template_with_the_results_before_the_next(
    qwen: PreTrainedTokenizerBase,
) -> None:
    engine = ScriptedEngine(qwen, [call("search_memory", query="VPN address"), "vpn2.example.com [m7]"])
    result = Agent(engine, toolbox()).run(QUESTION)

    first, second = engine.prompts
    for prompted in (first, second):
        # The tools are in the system turn, in the template's own words and as JSON schemas.
        assert prompted.prompt.startswith("<|im_start|>system\nYou are Ember, the team's assistant.\n\n# Tools")
        assert '"name": "search_memory"' in prompted.prompt
        assert prompted.prompt.endswith("<|im_start|>assistant\n")
    # The model's call comes back as its own assistant turn, and the result as a tool_response.
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "search_memory", "arguments": {"query": "VPN address"}}\n'
        "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n" + result.tool_calls[0].result + "\n"
        "</tool_response><|im_end|>\n<|im_start|>assistant\n"
    ) in second.prompt
    assert "<tool_response>" not in first.prompt
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool"]


def test_it_stops_at_the_step_limit_and_answers_from_what_it_found(qwen: PreTrainedTokenizerBase) -> None:
    engine = ScriptedEngine(
        qwen,
        [call("search_memory", query="vpn"), call("search_memory", query="vpn again"), "It is vpn2.example.com [m7]."],
    )
    result = Agent(engine, toolbox(), max_steps=2).run(QUESTION)

    assert (result.stopped_by, result.steps, len(result.tool_calls)) == ("step_limit", 3, 2)
    assert result.text == "It is vpn2.example.com [m7]."
    wrap_up = engine.prompts[-1]
    # The last call offers no tools, but still shows what the tools returned.
    assert wrap_up.tools is None and "# Tools" not in wrap_up.prompt
    assert wrap_up.prompt.count("<tool_response>") == 2


def test_a_model_that_only_calls_tools_gets_an_honest_answer(qwen: PreTrainedTokenizerBase) -> None:
    engine = ScriptedEngine(qwen, [call("current_time")] * 3)
    result = Agent(engine, toolbox(), max_steps=2).run(QUESTION)
    assert (result.stopped_by, result.steps, result.text) == ("step_limit", 3, OUT_OF_STEPS)


def test_it_respects_the_deadline(qwen: PreTrainedTokenizerBase) -> None:
    clock = FakeClock()
    engine = ScriptedEngine(qwen, [call("current_time")] * 10, seconds_per_call=25, clock=clock)
    result = Agent(engine, toolbox(), max_steps=10, deadline_s=60, clock=clock).run(QUESTION)

    assert (result.stopped_by, result.steps, result.text) == ("deadline", 3, OUT_OF_TIME)
    # Each call may only take the time that is left.
    assert [p.timeout for p in engine.prompts] == [60, 35, 10]


def test_bad_tool_calls_come_back_as_errors_the_model_can_read(qwen: PreTrainedTokenizerBase) -> None:
    engine = ScriptedEngine(
        qwen,
        [
            call("launch_rockets", target="moon")
            + "\n<tool_call>\n{not json}\n</tool_call>\n"
            + call("search_memory", topic="vpn"),
            "Sorry, I could not look that up.",
        ],
    )
    result = Agent(engine, toolbox()).run(QUESTION)

    unknown, garbled, wrong_argument = (c.result for c in result.tool_calls)
    assert unknown.startswith("error: there is no tool named 'launch_rockets'")
    assert garbled == "error: the tool call is not valid JSON"
    assert wrong_argument == "error: search_memory takes no argument topic"
    assert engine.prompts[1].prompt.count("<tool_response>\nerror: ") == 3
    assert result.stopped_by == "answer"


def test_without_a_tool_template_it_answers_plainly(
    tokenizer: PreTrainedTokenizerBase, qwen: PreTrainedTokenizerBase
) -> None:
    # The packaged SmolLM2 template has no tools: it renders them away.
    assert template_supports_tools(qwen) and not template_supports_tools(tokenizer)
    engine = ScriptedEngine(tokenizer, ["Paris."])
    agent = Agent(engine, toolbox())
    assert not agent.supports_tools
    result = agent.run(QUESTION)
    assert (result.text, result.stopped_by, result.steps, result.tool_calls) == ("Paris.", "answer", 1, [])
    assert engine.prompts[0].tools is None


def test_an_engine_that_cannot_pass_tools_means_no_tools(qwen: PreTrainedTokenizerBase) -> None:
    engine = PlainEngine(qwen, [call("current_time")])
    agent = Agent(engine, toolbox())
    assert not agent.supports_tools
    # A stray tool call is then just text: nothing runs it.
    assert agent.run(QUESTION).tool_calls == []


# -- reading tool calls ---------------------------------------------------------------------------


def test_llama_3_1_json_calls_are_read_when_they_name_a_known_tool() -> None:
    known = ["search_memory"]
    reply = parse_tool_calls('<|python_tag|>{"name": "search_memory", "parameters": {"query": "vpn"}}', known=known)
    assert [(c.name, c.arguments) for c in reply.calls] == [("search_memory", {"query": "vpn"})]
    # An answer that merely is JSON stays an answer.
    answer = '{"name": "Ada", "parameters": {"age": 36}}'
    assert parse_tool_calls(answer, known=known).calls == []
    assert parse_tool_calls(answer, known=known).content == answer


def test_hermes_calls_keep_the_text_around_them_and_survive_a_cut_off_end() -> None:
    reply = parse_tool_calls('Let me check.\n<tool_call>\n{"name": "read_thread", "arguments": "{}"}\n</tool_call>')
    assert reply.content == "Let me check."
    assert [(c.name, c.arguments, c.error) for c in reply.calls] == [("read_thread", {}, None)]
    cut = parse_tool_calls('<tool_call>\n{"name": "search_memory", "arguments": {"query": "vp')
    assert [(c.name, c.error) for c in cut.calls] == [("search_memory", "the tool call is not valid JSON")]


# -- read_channel and the privacy rule ------------------------------------------------------------


@pytest.fixture()
def other_slack() -> Iterator[LocalSlack]:
    with LocalSlack(bot_token="xoxb-other", team_id="T0002", bot_user_id="UBOT2", bot_id="BBOT2") as fake:
        yield fake


def test_read_channel_reads_only_what_the_asker_may_see(
    qwen: PreTrainedTokenizerBase, db: Database, slack: LocalSlack, other_slack: LocalSlack
) -> None:
    alice = slack.add_user("alice")
    asked_in = slack.add_channel("team-x", kind="private")
    general = slack.add_channel("general")
    secret = slack.add_channel("secret", kind="private")
    slack.user_message(asked_in, alice, "We ship on Friday.")
    slack.user_message(general, alice, "The VPN moved to vpn2.example.com.")
    slack.user_message(secret, alice, "Salaries are in the usual sheet.")
    for n in range(10):  # fake workspaces number from 1; step past ours so the IDs differ, as Slack's do
        other_slack.add_user(f"filler{n}")
    theirs = other_slack.add_channel("general")
    other_slack.user_message(theirs, other_slack.add_user("mallory"), "Their roadmap.")

    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    services = Services(db=db, qa=QAHandler(db=db, engine=ScriptedEngine(qwen, []), system_prompt="", max_new_tokens=8))
    tools = build_toolbox(
        audience=Audience(WORKSPACE, asked_in),
        history=SlackHistory(client, bot_user_id="UBOT"),
        channel_type=functools.partial(services.channel_type, client),
    )
    engine = ScriptedEngine(
        qwen,
        [
            call("read_channel", channel=asked_in),
            call("read_channel", channel=f"<#{general}|general>", limit="5"),
            call("read_channel", channel=secret),
            call("read_channel", channel=theirs),
            "Done.",
        ],
    )
    result = Agent(engine, tools, max_steps=5).run(QUESTION)

    own, public, private, foreign = (c.result for c in result.tool_calls)
    assert "We ship on Friday." in own
    assert f"Recent messages in <#{general}>:" in public and f"<@{alice}>: The VPN moved" in public
    refusal = "cannot be read from here: only this conversation and public channels of this workspace can"
    assert private == f"error: <#{secret}> {refusal}"
    assert foreign == f"error: <#{theirs}> {refusal}"
    assert "Salaries" not in engine.prompts[-1].prompt and "roadmap" not in engine.prompts[-1].prompt
    # Refused channels are never read: only the two allowed histories were asked for.
    assert [c.args["channel"] for c in slack.calls_to("conversations.history")] == [asked_in, general]
    assert [str(c.args["limit"]) for c in slack.calls_to("conversations.history")] == ["20", "5"]
    assert other_slack.calls == []


def test_read_channel_never_raises_on_what_it_refuses() -> None:
    def lookup(channel_id: str) -> str:
        raise RuntimeError("Slack is down")

    def history(channel_id: str, limit: int) -> list[ThreadMessage]:
        raise AssertionError("a refused channel must not be read")

    audience = Audience(WORKSPACE, "C0HELP")
    assert read_channel("C0OTHER", audience=audience, channel_type=lookup, history=history).startswith("error: ")
    assert read_channel("#general", audience=audience, channel_type=lookup, history=history).startswith(
        "error: '#general' is not a channel ID"
    )


def test_long_results_are_cut_keeping_the_newest_messages() -> None:
    many = [ThreadMessage(f"17419500{n:02d}.000100", "U1", f"message {n} " + "x" * 200, False) for n in range(40)]
    result = build_toolbox(audience=Audience(WORKSPACE, "C0HELP"), thread=lambda: many).call("read_thread", {})
    assert len(result) <= MAX_RESULT_CHARS
    assert result.startswith("(") and "earlier messages left out)" in result.splitlines()[0]
    assert "message 39 " in result and "message 0 " not in result


# -- retrieval for models without tools -----------------------------------------------------------


def test_rag_messages_put_memories_with_markers_into_the_system_prompt() -> None:
    other = MemoryHit(9, "fact", "Lunch is at noon.", None, "C0FOOD", None, 0.4)
    messages = rag_messages(QUESTION, [VPN_HIT, other])

    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert system.startswith("You are Ember, the team's assistant.\n\nThings you remember")
    assert "[m7] correction from <#C0GENERAL> (answering: Where is the VPN?): The VPN moved" in system
    assert "[m9] fact from <#C0FOOD>: Lunch is at noon." in system
    assert QUESTION[0]["content"] == "You are Ember, the team's assistant."  # the input is left alone
    assert rag_messages(QUESTION, []) == QUESTION
    assert rag_messages(QUESTION[1:], [other])[0]["role"] == "system"
    assert cited_memories("It moved [m7].", [VPN_HIT, other]) == [VPN_HIT]


# -- storing --------------------------------------------------------------------------------------


def test_tool_calls_are_stored_with_their_turn(qwen: PreTrainedTokenizerBase, db: Database) -> None:
    engine = ScriptedEngine(qwen, [call("search_memory", query="VPN address"), "vpn2.example.com [m7]"])
    result = Agent(engine, toolbox()).run(QUESTION)
    conversation = Conversation(WORKSPACE, "C0HELP", "channel", "1741950000.000100")
    with db.session() as session:
        turn = record_turn(
            session,
            conversation=conversation,
            user_id="U1",
            source="mention",
            question="Where is the VPN now?",
            question_ts=None,
            answer=result.text,
            answer_ts=None,
            model_version=result.model_version,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            latency_ms=5,
            asked_at=utcnow(),
        )
        store_tool_calls(session, turn_id=turn.id, calls=result.tool_calls)
        turn_id = turn.id

    with db.session() as session:
        rows = session.scalars(select(ToolCall).where(ToolCall.turn_id == turn_id)).all()
        stored = [(r.step, r.name, json.loads(r.arguments), r.result) for r in rows]
    assert stored == [(1, "search_memory", {"query": "VPN address"}, result.tool_calls[0].result)]
    assert isinstance(result.tool_calls[0], ToolCallRecord)


def test_current_time_always_says_its_zone() -> None:
    naive = build_toolbox(audience=Audience(WORKSPACE, "C0HELP"), clock=lambda: datetime(2025, 1, 2, 3, 4, 5))
    assert naive.call("current_time", {}) == "2025-01-02T03:04:05+00:00 (Thursday)"
    aware = build_toolbox(audience=Audience(WORKSPACE, "C0HELP"), clock=lambda: datetime(2025, 1, 2, tzinfo=UTC))
    assert aware.call("current_time", {}).startswith("2025-01-02T00:00:00+00:00")


def test_every_result_is_scrubbed_before_the_model_sees_it(qwen: PreTrainedTokenizerBase) -> None:
    pasted = [ThreadMessage("1741950000.000100", "U1", "the token is xoxb-1234-secret", False)]
    tools = build_toolbox(audience=Audience(WORKSPACE, "C0HELP"), thread=lambda: pasted)
    engine = ScriptedEngine(qwen, [call("read_thread"), "Done."])
    Agent(engine, tools).run(QUESTION)
    # The tool read the secret; the prompt that carried its result to the model did not.
    shown = engine.prompts[1].messages[-1]["content"]
    assert shown.endswith("<@U1>: the token is [redacted]")
    assert all("xoxb-1234-secret" not in p.prompt for p in engine.prompts)
