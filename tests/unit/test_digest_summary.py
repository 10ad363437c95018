"""The digest summariser: map-reduce within the window, every message shown once, only real sources linked.

The model side is real where it matters: prompts are rendered and counted by the packaged tokenizer's
chat template (a replying engine computes each answer from its prompt), and one run uses the tiny real
transformer on the local engine.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from handlers.qa import digest
from handlers.qa.digest import SourceMessage, Summariser, Unit, parse_bullets
from models import loading
from models.engine import Engine
from tests.support.scripted import ReplyingEngine, ScriptedEngine

SHOWN = re.compile(r"^\W*\[(\d+)\]", re.M)
NOTE = re.compile(r"^(?:DECISION|ACTION[^:]*|QUESTION|HIGHLIGHT):.*$", re.M)

Reply = Callable[[list[dict[str, Any]]], str]


def channel(messages: int, *, thread_every: int = 5, replies: int = 12) -> list[Unit]:
    """Threads (a parent and its replies) between runs of top-level messages, `messages` in all."""
    units: list[Unit] = []
    made = 0
    while made < messages:
        index = len(units)
        if index % thread_every == 0:
            size = min(replies + 1, messages - made)
            parent = f"{index}.000000"
            thread = [
                SourceMessage(f"{index}.{i:06d}", f"person{i % 7}", f"thread {index} message {i} on topic", parent)
                for i in range(size)
            ]
            units.append(Unit(tuple(thread)))
        else:
            size = min(8, messages - made)
            run = [
                SourceMessage(f"{index}.{i:06d}", f"person{i % 5}", f"loose {index} message {i}") for i in range(size)
            ]
            units.append(Unit(tuple(run)))
        made += size
    return units


def shown(messages: list[dict[str, Any]]) -> list[int]:
    """The message numbers a prompt shows (the worked example is a turn of its own, left out here)."""
    return [int(n) for n in SHOWN.findall(messages[-1]["content"])]


def is_map(messages: list[dict[str, Any]]) -> bool:
    return messages[0]["content"] == digest.MAP_SYSTEM


def is_reduce(messages: list[dict[str, Any]]) -> bool:
    return messages[0]["content"] == digest.REDUCE_SYSTEM


def notes_of(messages: list[dict[str, Any]]) -> list[str]:
    return NOTE.findall(messages[-1]["content"])


def citing_first(messages: list[dict[str, Any]]) -> str:
    """Map: one highlight per part citing its first message; reduce: the notes as they came."""
    if is_map(messages):
        return f"HIGHLIGHT: part starting at {shown(messages)[0]} [{shown(messages)[0]}]"
    return "\n".join(notes_of(messages))


def replying(tokenizer: PreTrainedTokenizerBase, reply: Reply, window: int = 2048) -> ReplyingEngine:
    return ReplyingEngine(tokenizer, reply, context_window=window)


def everything(units: list[Unit]) -> list[SourceMessage]:
    return [message for unit in units for message in unit.messages]


# --- the map step ----------------------------------------------------------------------------------


def test_every_message_reaches_exactly_one_map_prompt_submitted_before_any_is_read(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    units = channel(1200)
    engine = replying(tokenizer, citing_first)
    result = Summariser(engine).summarise(units, title="#general")

    maps = [i for i, p in enumerate(engine.prompts) if is_map(p.messages)]
    seen = Counter(n for i in maps for n in shown(engine.prompts[i].messages))
    assert seen == Counter(range(1, 1201)), "each of the 1,200 numbers is shown exactly once"
    text = "\n".join(engine.prompts[i].prompt for i in maps)
    assert all(m.text in text for m in everything(units)), "every message's words reach the model"
    assert len(maps) > 1
    assert all(prompt + new <= engine.window for prompt, new in engine.budgets)
    assert result.largest_prompt <= engine.window
    first_read = engine.events.index(next(e for e in engine.events if e[0] == "read"))
    assert {("submit", i) for i in maps} <= set(engine.events[:first_read]), "all map prompts submitted first"
    assert (result.messages, result.units, result.parts) == (1200, len(units), len(maps))


def test_a_message_too_long_for_a_prompt_is_cut_not_dropped(tokenizer: PreTrainedTokenizerBase) -> None:
    paste = "the deploy log says " + "xoxb-1234567890-abcdefgh " * 3000
    units = [*channel(30), Unit((SourceMessage("99.1", "dana", paste),)), *channel(10)]
    engine = replying(tokenizer, citing_first, window=1024)
    result = Summariser(engine, note_tokens=64, digest_tokens=128).summarise(units)

    seen = Counter(n for p in engine.prompts if is_map(p.messages) for n in shown(p.messages))
    assert seen == Counter(range(1, 42))
    assert sum("dana: the deploy log says [redacted]" in p.prompt for p in engine.prompts) == 1
    assert result.cut_messages == 1
    assert not any("xoxb-" in p.prompt for p in engine.prompts), "a secret cut in half is still redacted"
    assert all(prompt + new <= 1024 for prompt, new in engine.budgets)


def test_one_part_is_its_own_digest_without_a_reduce_call(tokenizer: PreTrainedTokenizerBase) -> None:
    units = channel(20)
    engine = replying(tokenizer, lambda m: "DECISION: keep the weekly sync [3]")
    told: list[str] = []
    result = Summariser(engine).summarise(units, progress=told.append)

    assert result.prompts == 1 and result.rounds == 0
    assert told == ["summarising 1 part"]
    shown_prompt = engine.prompts[0].prompt
    assert "[1] person0: thread 0 message 0" in shown_prompt
    assert f"{digest.REPLY_MARK}[2] person1: thread 0 message 1" in shown_prompt, "replies are marked as such"
    [bullet] = result.bullets()
    assert bullet.sources == (everything(units)[2],)


def test_no_messages_means_no_model_call(tokenizer: PreTrainedTokenizerBase) -> None:
    result = Summariser(ScriptedEngine(tokenizer, [])).summarise([])
    assert result.empty and result.prompts == 0 and result.messages == 0 and result.bullets() == []


# --- references --------------------------------------------------------------------------------------


def test_a_reference_the_model_was_not_given_is_dropped_and_counted(tokenizer: PreTrainedTokenizerBase) -> None:
    units = channel(6, thread_every=99)
    reply = (
        "DECISION: ship on friday [1][9999]\nHIGHLIGHT: a story nobody told [9999]\nQUESTION: who owns the pager? [2]"
    )
    result = Summariser(replying(tokenizer, lambda m: reply)).summarise(units)

    sent = everything(units)
    assert result.invented_refs == 2
    assert result.uncited == 1
    assert list(result.sections) == ["Decisions", "Open questions"]
    assert result.sections["Decisions"][0].sources == (sent[0],)
    assert all(source in sent for bullet in result.bullets() for source in bullet.sources)


def test_a_real_message_from_another_part_is_not_linked(tokenizer: PreTrainedTokenizerBase) -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        if not is_map(messages):
            return "\n".join(notes_of(messages))
        numbers = shown(messages)
        if 1 in numbers:
            return "DECISION: the first part decided [1]"
        return f"DECISION: a later part decided [{numbers[0]}][1]"

    units = channel(300)
    result = Summariser(replying(tokenizer, reply, window=1024), note_tokens=64, digest_tokens=256).summarise(units)

    assert result.parts > 2
    assert result.invented_refs >= result.parts - 1
    later = next(b for b in result.sections["Decisions"] if b.text == "a later part decided")
    assert everything(units)[0] not in later.sources


# --- sections, owners, lenient reading ---------------------------------------------------------------


def test_sections_come_in_order_with_owners_and_duplicates_merged(tokenizer: PreTrainedTokenizerBase) -> None:
    units = channel(5, thread_every=99)
    reply = (
        "Here are the notes:\n"
        "- **Highlight**: the launch party is on friday (3)\n"
        "* action (@bob): rotate the staging keys [2, 3]\n"
        "1. DECISION: switch CI to arm64 [1][2]\n"
        "decision: Switch CI to arm64. [3]\n"
    )
    result = Summariser(replying(tokenizer, lambda m: reply)).summarise(units)

    m = everything(units)
    assert list(result.sections) == ["Decisions", "Action items", "Highlights"]
    [decision] = result.sections["Decisions"]
    assert (decision.text, decision.sources) == ("switch CI to arm64", (m[0], m[1], m[2]))
    [action] = result.sections["Action items"]
    assert (action.text, action.owner, action.sources) == ("rotate the staging keys", "bob", (m[1], m[2]))
    [highlight] = result.sections["Highlights"]
    assert (highlight.text, highlight.owner) == ("the launch party is on friday", None)


def test_parse_bullets_reads_headings_and_leaves_out_copied_input() -> None:
    numbered = {n: SourceMessage(f"1.{n}", "ann", f"message {n}") for n in (1, 2, 3)}
    text = (
        "**Decisions**\n"
        "- move the builds to arm64 [1]\n"
        "## Open questions\n"
        "* who owns the pager? (2)\n"
        "- a bullet with no source\n"
        "ACTION: @dee to book the room [3][7]\n"
        "[1] ann: message 1\n"
        "That is all for this week.\n"
    )
    bullets, invented, uncited = parse_bullets(text, numbered)

    assert [(b.text, b.sources, b.owner) for b in bullets] == [
        ("move the builds to arm64", (numbered[1],), None),
        ("@dee to book the room", (numbered[3],), "dee"),
        ("who owns the pager?", (numbered[2],), None),
    ]
    assert (invented, uncited) == (1, 1)


# --- what never reaches a prompt ---------------------------------------------------------------------


def test_secrets_in_messages_reach_no_prompt(tokenizer: PreTrainedTokenizerBase) -> None:
    secrets = [
        SourceMessage("1.1", "eve", "the bot token is xoxb-1234567890-abcdefgh, keep it safe"),
        SourceMessage("1.2", "eve", "staging db: password=hunter2hunter2 for now"),
    ]

    def echo(messages: list[dict[str, Any]]) -> str:
        if not is_map(messages):
            return "\n".join(notes_of(messages))
        lines = messages[-1]["content"].splitlines()
        pairs = zip(shown(messages), lines[2:], strict=False)
        return "\n".join(f"HIGHLIGHT: {line.split(': ', 1)[-1]} [{n}]" for n, line in pairs)

    units = [*channel(100), Unit(tuple(secrets)), *channel(100)]
    engine = replying(tokenizer, echo, window=1024)
    result = Summariser(engine, note_tokens=128, digest_tokens=256).summarise(units)

    prompts = "\n".join(p.prompt for p in engine.prompts)
    assert any(is_reduce(p.messages) for p in engine.prompts)
    for secret in ("xoxb-1234567890-abcdefgh", "hunter2hunter2"):
        assert secret not in prompts
        assert all(secret not in bullet.text for bullet in result.bullets())
    assert "password=[redacted]" in prompts


# --- the reduce step -----------------------------------------------------------------------------------


def merging(messages: list[dict[str, Any]]) -> str:
    """Map: a note for every message; reduce: one line for every four notes, citing all of theirs."""
    if is_map(messages):
        return "\n".join(f"HIGHLIGHT: topic {n} came up [{n}]" for n in shown(messages))
    notes = notes_of(messages)
    lines = []
    for start in range(0, len(notes), 4):
        refs = "".join(re.findall(r"\[\d+\]", "".join(notes[start : start + 4])))
        lines.append(f"HIGHLIGHT: topics from note {start} came up {refs}")
    return "\n".join(lines)


def test_notes_that_do_not_fit_one_prompt_are_reduced_in_rounds(tokenizer: PreTrainedTokenizerBase) -> None:
    units = channel(400)
    engine = replying(tokenizer, merging, window=1024)
    told: list[str] = []
    result = Summariser(engine, note_tokens=200, digest_tokens=256).summarise(units, progress=told.append)

    reduces = [p for p in engine.prompts if is_reduce(p.messages)]
    assert len(reduces) > 1
    assert result.rounds >= 2
    assert all(prompt + new <= 1024 for prompt, new in engine.budgets)
    assert result.largest_prompt <= 1024
    sent = everything(units)
    assert result.bullets() and all(s in sent for b in result.bullets() for s in b.sources)
    assert told[0].startswith("summarising ") and told[-1] == "combining notes"


def test_a_model_that_passes_its_notes_on_unmerged_still_converges(tokenizer: PreTrainedTokenizerBase) -> None:
    def passing_on(messages: list[dict[str, Any]]) -> str:
        if is_map(messages):
            return "\n".join(f"HIGHLIGHT: topic {n} came up [{n}]" for n in shown(messages))
        return "\n".join(notes_of(messages))

    units = channel(400)
    engine = replying(tokenizer, passing_on, window=1024)
    told: list[str] = []
    result = Summariser(engine, note_tokens=200, digest_tokens=256).summarise(units, progress=told.append)

    groups = [int(re.findall(r"\d+", line)[0]) for line in told if line.startswith("combining notes in")]
    assert len(groups) >= 2 and groups == sorted(set(groups), reverse=True), "each round needs fewer prompts"
    assert told[-1] == "combining notes" and result.rounds == len(groups) + 1 <= digest.MAX_ROUNDS
    assert all(prompt + new <= 1024 for prompt, new in engine.budgets)
    sent = everything(units)
    assert result.bullets() and all(s in sent for b in result.bullets() for s in b.sources)


# --- the real engine -----------------------------------------------------------------------------------


def test_the_tiny_real_model_digests_within_its_window(tiny_model_dir: Path, tmp_path: Path) -> None:
    engine = Engine.load(loading.resolve(str(tiny_model_dir), tmp_path), device="cpu")
    window = engine.context_window
    try:
        units = channel(60)
        result = Summariser(engine, note_tokens=24, digest_tokens=32).summarise(units, title="#tiny")
    finally:
        engine.close()

    assert result.messages == 60
    assert result.parts > 1 and result.prompts >= result.parts
    assert 0 < result.largest_prompt <= window
    assert result.invented_refs >= 0 and result.uncited >= 0
    sent = everything(units)
    assert all(source in sent for bullet in result.bullets() for source in bullet.sources)
