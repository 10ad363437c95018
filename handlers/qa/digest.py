"""Digest summarising, Slack-free: map-reduce within the context window, every bullet citing the numbered
messages it came from.

Map: the messages are numbered 1..N, redacted, and packed (threads kept whole where they fit) into chunks
that each fit one prompt; every chunk is submitted before any is read, so the engine batches them, and
each answers with tagged notes that cite numbers. Reduce: the notes, keeping their numbers, are merged
into the digest, in groups and then groups of results when they do not fit one prompt.

A number a call was not given is dropped, never linked: it would send a reader to a message that says
something else. A bullet left with no number is dropped too, since nobody could check it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from db.redact import redact
from models.base import LLM, Completion, Message, TokenStream, drain

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SECTIONS = ("Decisions", "Action items", "Open questions", "Highlights")
TAGS = dict(zip(SECTIONS, ("DECISION", "ACTION", "QUESTION", "HIGHLIGHT"), strict=True))

FALLBACK_WINDOW = 2048  # for backends that cannot tell their window
MAX_ROUNDS = 6  # reduce rounds; each at least halves the groups, so this covers thousands of parts
MAX_BULLET_CHARS = 300
MAX_AUTHOR_CHARS = 40
REPLY_MARK = "  ↳ "
CUT_MARK = " …"
# Lines are measured one at a time; where they join, a token or two can merge or split.
SAFETY_TOKENS = 8

MAP_SYSTEM = (
    "You take notes on a Slack channel for a digest. Each message starts with its number, like [12]; "
    "replies in a thread start with ↳. Write one note per line, ending with the numbers of the messages "
    "it comes from:\n"
    "DECISION: what was decided [n]\n"
    "ACTION (@name): what someone will do [n]\n"
    "QUESTION: a question left open [n]\n"
    "HIGHLIGHT: other news worth knowing [n]\n"
    "Skip small talk. Write only notes."
)
MAP_EXAMPLE = (
    "[3] ann: should standup move to 10am?\n"
    f"{REPLY_MARK}[4] bo: yes, 10am from monday\n"
    f"{REPLY_MARK}[5] ann: ok, I'll update the calendar\n"
    "\n"
    "[6] cy: who owns the pager rota now?\n"
    "[7] dee: lunch was great",
    "DECISION: standup moves to 10am from Monday [3][4]\n"
    "ACTION (@ann): update the calendar [5]\n"
    "QUESTION: who owns the pager rota? [6]",
)
REDUCE_SYSTEM = (
    "You write the digest of a Slack channel from notes on its parts. Merge notes that say the same thing "
    "into one line and keep all their numbers. Keep every decision, action and open question, and only "
    "the main highlights. Use the same format, one per line:\n"
    "DECISION: ... [n]\n"
    "ACTION (@name): ... [n]\n"
    "QUESTION: ... [n]\n"
    "HIGHLIGHT: ... [n]\n"
    "Write only the digest."
)
REDUCE_EXAMPLE = (
    "DECISION: standup moves to 10am [3][4]\n"
    "DECISION: standup at 10am from Monday [4]\n"
    "ACTION (@ann): update the calendar [5]\n"
    "HIGHLIGHT: lunch was great [7]",
    "DECISION: standup moves to 10am from Monday [3][4]\nACTION (@ann): update the calendar [5]",
)


# --- what goes in and what comes out ---------------------------------------------------------------


class WindowTooSmall(ValueError):
    """The model's context window cannot hold the instruction and any messages to summarise."""


@dataclass(frozen=True)
class SourceMessage:
    ts: str  # Slack ts, unique per channel
    author: str  # display name shown to the model
    text: str  # as written; the summariser redacts before any prompt
    thread_ts: str | None = None  # parent ts for thread replies (and for the parent itself)

    @property
    def reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass(frozen=True)
class Unit:
    """A thread (parent + replies), or a run of consecutive top-level channel messages."""

    messages: tuple[SourceMessage, ...]


@dataclass(frozen=True)
class Bullet:
    text: str  # without the [n] markers
    sources: tuple[SourceMessage, ...]  # the cited input messages (at least one)
    owner: str | None = None  # action items: who owns it, when the model said


@dataclass(frozen=True)
class Digest:
    sections: dict[str, tuple[Bullet, ...]]  # only non-empty sections, in SECTIONS order
    messages: int  # input messages (all of them were shown to the model in the map step)
    units: int
    prompts: int  # model calls made
    prompt_tokens: int
    completion_tokens: int
    largest_prompt: int  # the most tokens any one call took (prompt + max_new_tokens), <= context_window
    invented_refs: int  # [n] the model wrote that were not among the messages it was given (dropped)
    uncited: int  # bullets dropped because no valid reference was left
    seconds: float
    parts: int = 0  # map prompts
    rounds: int = 0  # reduce rounds (0: one part's notes were the digest, or there were none)
    cut_messages: int = 0  # messages too long for a prompt, shown by their start

    @property
    def empty(self) -> bool:
        return not any(self.sections.values())

    def bullets(self) -> list[Bullet]:
        return [bullet for section in SECTIONS for bullet in self.sections.get(section, ())]


@dataclass(frozen=True)
class Numbered:
    """An input message with the number the model cites it by."""

    number: int
    message: SourceMessage
    unit: int  # index of its unit, so a rendering can keep units apart


def number_messages(units: Sequence[Unit]) -> list[Numbered]:
    """Every message numbered 1..N in the order given."""
    items: list[Numbered] = []
    for index, unit in enumerate(units):
        for message in unit.messages:
            items.append(Numbered(len(items) + 1, message, index))
    return items


def message_line(item: Numbered, text: str | None = None) -> str:
    """`[12] alice: text`, replies marked so the model sees the thread; `text` replaces a long one's text."""
    message = item.message
    shown = _one_line(redact(message.text if text is None else text))
    author = _one_line(redact(message.author))[:MAX_AUTHOR_CHARS] or "someone"
    return f"{REPLY_MARK if message.reply else ''}[{item.number}] {author}: {shown}"


def render_messages(items: Sequence[Numbered]) -> str:
    """The messages as the model sees them: one line each, a blank line between units."""
    return _join([(item.unit, message_line(item)) for item in items])


def map_messages(body: str, title: str = "") -> list[Message]:
    """The map prompt: instruction, one worked example, then the numbered messages."""
    header = f"Messages from {_one_line(redact(title))}:" if title else "Messages:"
    return _with_example(MAP_SYSTEM, MAP_EXAMPLE, f"{header}\n\n{body}")


def reduce_messages(body: str, title: str = "") -> list[Message]:
    header = f"Notes on {_one_line(redact(title))}:" if title else "Notes:"
    return _with_example(REDUCE_SYSTEM, REDUCE_EXAMPLE, f"{header}\n{body}")


def parse_bullets(text: str, numbered: Mapping[int, SourceMessage]) -> tuple[list[Bullet], int, int]:
    """The bullets a reply holds, citing only `numbered`: (bullets, invented refs dropped, bullets dropped)."""
    parsed = parse_notes(text, numbered.keys())
    bullets = [bullet for notes in _sections(parsed.notes, numbered).values() for bullet in notes]
    return bullets, parsed.invented, parsed.uncited


# --- reading replies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A bullet as it travels between steps: its cited numbers, not yet the messages."""

    section: str
    text: str
    numbers: tuple[int, ...]
    owner: str | None = None

    def line(self) -> str:
        owner = f" (@{self.owner})" if self.owner else ""
        refs = "".join(f"[{number}]" for number in self.numbers)
        return f"{TAGS[self.section]}{owner}: {self.text} {refs}"


@dataclass(frozen=True)
class Parsed:
    notes: list[Note]
    invented: int
    uncited: int


_ALIASES = {
    **dict.fromkeys(("decision", "decisions", "decided"), "Decisions"),
    **dict.fromkeys(
        ("action", "actions", "action item", "action items", "todo", "todos", "to do", "task", "tasks", "next step"),
        "Action items",
    ),
    **dict.fromkeys(("question", "questions", "open question", "open questions", "open"), "Open questions"),
    **dict.fromkeys(("highlight", "highlights", "note", "notes", "news", "update", "updates", "fyi"), "Highlights"),
}
_LIST_MARK = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+")
_HEADING = re.compile(r"^\s*#+\s*")
_REFS = re.compile(r"[\[(]\s*#?\d+(?:\s*(?:[,;&]|and)\s*#?\d+)*\s*[\])]")
_DIGITS = re.compile(r"\d+")
_TAGGED = re.compile(
    r"^(?P<tag>[A-Za-z][A-Za-z -]{0,24}?)\s*(?:\((?P<owner>[^()\n]{1,60})\)|(?P<at>@[\w.-]+))?\s*[:：]\s*(?P<rest>.*)$"
)
_ECHO = re.compile(r"^\W*\[\d+\]\s*(?P<name>[^\s:\[\]]{1,40}):")
_LEADING_OWNER = re.compile(r"^@(?P<name>[\w.-]+)")


def parse_notes(text: str, valid: Collection[int]) -> Parsed:
    """Notes from a reply, leniently: bullets, bold tags, headings, lower case, [12, 14], [12][14], (12)."""
    allowed = set(valid)
    section: str | None = None
    notes: list[Note] = []
    invented = uncited = 0
    for raw in text.splitlines():
        read = _read_line(raw, section)
        if isinstance(read, str):
            section = read
            continue
        if read is None:
            continue
        kind, body, owner, numbers = read
        good = tuple(dict.fromkeys(n for n in numbers if n in allowed))
        invented += len(set(numbers) - allowed)
        if len(body.split()) < 2:
            continue  # "none", a stray word: nothing a reader could use
        if not good:
            uncited += 1
            continue
        notes.append(Note(kind, body[:MAX_BULLET_CHARS], good, owner if kind == "Action items" else None))
    return Parsed(merge_notes(notes), invented, uncited)


def _read_line(raw: str, section: str | None) -> str | tuple[str, str, str | None, list[int]] | None:
    """A heading (its section), a candidate bullet (section, text, owner, numbers), or None for prose."""
    line = _HEADING.sub("", raw.replace("**", "").replace("__", ""))
    listed = bool(_LIST_MARK.match(line))
    line = _LIST_MARK.sub("", line, count=1).strip()
    heading = _alias(line.rstrip(":：").strip())
    if heading is not None:
        return heading
    echo = _ECHO.match(line)
    if echo and _alias(echo["name"]) is None:
        return None  # a message copied from the input, not a note
    numbers = [int(n) for group in _REFS.findall(line) for n in _DIGITS.findall(group)]
    line = _REFS.sub(" ", line).strip()
    tagged = _TAGGED.match(line)
    kind = _alias(tagged["tag"]) if tagged else None
    if tagged and kind is not None:
        rest = _tidy(tagged["rest"])
        return kind, rest, _owner(tagged["owner"] or tagged["at"], rest), numbers
    if not numbers and not listed:
        return None  # prose around the notes
    return section or "Highlights", _tidy(line), None, numbers


def _alias(tag: str) -> str | None:
    return _ALIASES.get(" ".join(tag.lower().replace("-", " ").split()))


def _owner(given: str | None, rest: str) -> str | None:
    if given is None:
        leading = _LEADING_OWNER.match(rest)
        return leading["name"] if leading else None
    name = re.sub(r"(?i)^\s*owner\s*:?\s*", "", given).strip().lstrip("@").strip()
    return name or None


def _tidy(text: str) -> str:
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return " ".join(text.split()).strip(" -–—:;,")


def merge_notes(notes: Sequence[Note]) -> list[Note]:
    """Notes saying the same thing in the same section become one, citing what each cited."""
    merged: dict[tuple[str, str], Note] = {}
    for note in notes:
        key = (note.section, " ".join(re.sub(r"[^\w]+", " ", note.text.lower()).split()))
        seen = merged.get(key)
        if seen is None:
            merged[key] = note
            continue
        numbers = tuple(sorted(set(seen.numbers) | set(note.numbers)))
        merged[key] = Note(seen.section, seen.text, numbers, seen.owner or note.owner)
    return list(merged.values())


def _sections(notes: Sequence[Note], numbered: Mapping[int, SourceMessage]) -> dict[str, tuple[Bullet, ...]]:
    """Bullets by section, in SECTIONS order, each section in the order its sources were written."""
    sections: dict[str, tuple[Bullet, ...]] = {}
    for section in SECTIONS:
        chosen = sorted((n for n in notes if n.section == section), key=lambda n: min(n.numbers))
        bullets = tuple(
            Bullet(n.text, tuple(numbered[number] for number in sorted(n.numbers)), n.owner) for n in chosen
        )
        if bullets:
            sections[section] = bullets
    return sections


# --- summarising -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One message as shown in a map prompt (cut to fit where it was long), with its measured tokens."""

    number: int
    unit: int
    text: str
    tokens: int


@dataclass(frozen=True)
class Chunk:
    """One map prompt's share of the input: whole units where they fit, runs of a larger one otherwise."""

    lines: tuple[Line, ...]

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(line.number for line in self.lines)

    @property
    def text(self) -> str:
        return _join_lines(self.lines)


@dataclass
class _Tally:
    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    largest: int = 0
    invented: int = 0
    uncited: int = 0
    rounds: int = 0
    cut: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, completion: Completion, max_new_tokens: int) -> None:
        self.prompts += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.largest = max(self.largest, completion.prompt_tokens + max_new_tokens)
        if completion.prompt.dropped_messages:
            log.warning("the engine dropped %d messages of a digest prompt", completion.prompt.dropped_messages)

    def read(self, parsed: Parsed) -> list[Note]:
        self.invented += parsed.invented
        self.uncited += parsed.uncited
        return parsed.notes


class Summariser:
    """Digests of a window of channel messages, made with one engine, never past its context window."""

    def __init__(
        self,
        engine: LLM,
        *,
        note_tokens: int = 256,
        digest_tokens: int = 768,
        timeout: float | None = None,
        context_tokens: int | None = None,
    ) -> None:
        self.engine = engine
        self.note_tokens = note_tokens
        self.digest_tokens = digest_tokens
        self.timeout = timeout  # seconds each model call may take from its submission
        self.context_tokens = context_tokens

    @property
    def window(self) -> int:
        """The tokens one call may take: the cap asked for, never more than the engine's own window."""
        sizes = [size for size in (self.context_tokens, self.engine.context_window) if size]
        return min(sizes) if sizes else FALLBACK_WINDOW

    def _new_tokens(self, wanted: int) -> int:
        # A reply never takes more than half the window, so a prompt always has room.
        return max(1, min(wanted, self.window // 2))

    def summarise(
        self, units: Sequence[Unit], *, title: str = "", progress: Callable[[str], None] | None = None
    ) -> Digest:
        tell = progress or (lambda _: None)
        tally = _Tally()
        numbered = {item.number: item.message for item in number_messages(units)}
        if not numbered:
            return self._digest([], numbered, units, tally, parts=0)
        chunks = self._chunks(units, title, tally)
        tell(f"summarising {len(chunks)} part{'s' * (len(chunks) != 1)}")
        mapped = self._map(chunks, title, tally)
        if len(chunks) == 1:
            # One part's notes already cite only its own messages: a reduce call would only re-word them.
            notes = merge_notes(mapped[0])
        else:
            notes = self._reduce([note for part in mapped for note in part], title, tally, tell)
        return self._digest(notes, numbered, units, tally, parts=len(chunks))

    # -- map ----------------------------------------------------------------------------------------

    def chunks(self, units: Sequence[Unit], *, title: str = "") -> list[Chunk]:
        """The map step's parts: every message in exactly one, each part's prompt within the window."""
        return self._chunks(units, title, _Tally())

    def _chunks(self, units: Sequence[Unit], title: str, tally: _Tally) -> list[Chunk]:
        new = self._new_tokens(self.note_tokens)
        room = self._room(map_messages("", title), new)
        # No one message may take more than half a part, so one long paste cannot crowd out the rest.
        lines = self._lines(number_messages(units), max(8, room // 2), tally)
        parts = self._verified(_pack_units(lines, room), lambda part: map_messages(_join_lines(part), title), new)
        return [Chunk(tuple(part)) for part in parts]

    def _lines(self, items: Sequence[Numbered], longest: int, tally: _Tally) -> list[Line]:
        lines = []
        for item in items:
            text = message_line(item)
            tokens = self._tokens(text)
            if tokens > longest:
                text, tokens = self._cut(item, tokens, longest)
                tally.cut += 1
            lines.append(Line(item.number, item.unit, text, tokens))
        return lines

    def _cut(self, item: Numbered, tokens: int, longest: int) -> tuple[str, int]:
        """The message's start, as much as fits: better a cut message than a dropped one."""
        # Redacted before cutting: a secret cut in half would no longer match its pattern.
        clean = redact(item.message.text)
        keep = len(clean)
        text = message_line(item)
        while tokens > longest and keep > 0:
            keep = int(keep * longest / tokens * 0.9)
            text = message_line(item, clean[:keep] + CUT_MARK)
            tokens = self._tokens(text)
        return text, tokens

    def _map(self, chunks: Sequence[Chunk], title: str, tally: _Tally) -> list[list[Note]]:
        new = self._new_tokens(self.note_tokens)
        completions = self._run([map_messages(chunk.text, title) for chunk in chunks], new, tally)
        return [tally.read(parse_notes(c.text, chunk.numbers)) for chunk, c in zip(chunks, completions, strict=True)]

    # -- reduce -------------------------------------------------------------------------------------

    def _reduce(self, notes: list[Note], title: str, tally: _Tally, tell: Callable[[str], None]) -> list[Note]:
        final = self._new_tokens(self.digest_tokens)
        # An intermediate reply gets at most a third of what a prompt holds, so at least two fit the next.
        middle = min(final, max(1, self._room(reduce_messages("", title), 0) // 3))
        before: int | None = None
        for _ in range(MAX_ROUNDS):
            if not notes:
                return []
            groups = self._groups(notes, title, final)
            if len(groups) == 1:
                tell("combining notes")
                return self._reduce_round(groups, title, final, tally)
            groups = self._groups(notes, title, middle)
            if before is not None and len(groups) >= before:
                break  # the model is not shortening the notes: further rounds would not either
            before = len(groups)
            tell(f"combining notes in {len(groups)} groups")
            notes = self._reduce_round(groups, title, middle, tally)
        return merge_notes(notes)

    def _reduce_round(self, groups: Sequence[list[Note]], title: str, new: int, tally: _Tally) -> list[Note]:
        tally.rounds += 1
        completions = self._run([reduce_messages(_note_lines(group), title) for group in groups], new, tally)
        found: list[Note] = []
        for group, completion in zip(groups, completions, strict=True):
            given = {number for note in group for number in note.numbers}
            found.extend(tally.read(parse_notes(completion.text, given)))
        return merge_notes(found)

    def _groups(self, notes: Sequence[Note], title: str, new: int) -> list[list[Note]]:
        """Notes packed into reduce prompts that fit, like notes (same section) side by side to merge."""
        room = self._room(reduce_messages("", title), new)
        ordered = sorted(notes, key=lambda n: (SECTIONS.index(n.section), min(n.numbers)))
        sized = [self._fitted_note(note, room) for note in ordered]
        groups: list[list[Note]] = [[]]
        used = 0
        for note, tokens in sized:
            if groups[-1] and used + tokens > room:
                groups.append([])
                used = 0
            groups[-1].append(note)
            used += tokens
        return self._verified(groups, lambda g: reduce_messages(_note_lines(g), title), new)

    def _fitted_note(self, note: Note, room: int) -> tuple[Note, int]:
        tokens = self._tokens(note.line()) + 1
        while tokens > room and len(note.text) > 1:
            note = Note(note.section, note.text[: len(note.text) // 2] + CUT_MARK, note.numbers, note.owner)
            tokens = self._tokens(note.line()) + 1
        return note, tokens

    # -- the model ----------------------------------------------------------------------------------

    def _run(self, prompts: Sequence[list[Message]], new: int, tally: _Tally) -> list[Completion]:
        streams: list[TokenStream] = []
        try:
            # Every prompt is submitted before any is read: that is what lets the engine batch them.
            for messages in prompts:
                streams.append(self.engine.stream(messages, max_new_tokens=new, timeout=self.timeout))
            completions = [drain(stream) for stream in streams]
        except BaseException:
            for stream in streams:
                stream.cancel()
            raise
        for completion in completions:
            tally.add(completion, new)
        return completions

    def _room(self, empty_prompt: list[Message], new: int) -> int:
        """Tokens left for lines once the instruction, the example and the reply are counted."""
        room = self.window - new - self.engine.count_tokens(empty_prompt) - SAFETY_TOKENS
        if room < 16:
            raise WindowTooSmall(f"a {self.window}-token window leaves no room for messages beside the instruction")
        return room

    def _tokens(self, line: str) -> int:
        """A line's tokens as it adds to a prompt (its newline included)."""
        return self.engine.count_tokens([{"role": "user", "content": line}]) - self._empty_user + 1

    @cached_property
    def _empty_user(self) -> int:
        return self.engine.count_tokens([{"role": "user", "content": ""}])

    def _verified(
        self, packed: Sequence[list[_T]], build: Callable[[list[_T]], list[Message]], new: int
    ) -> list[list[_T]]:
        """Each part checked against its real rendering; one that is over hands its tail to a part of its own."""
        out: list[list[_T]] = []
        queue = list(packed)
        while queue:
            part = queue.pop(0)
            size = len(part)
            while size > 1 and self.engine.count_tokens(build(part[:size])) + new > self.window:
                size -= 1
            out.append(part[:size])
            if size < len(part):
                queue.insert(0, part[size:])
        return out

    def _digest(
        self,
        notes: Sequence[Note],
        numbered: Mapping[int, SourceMessage],
        units: Sequence[Unit],
        tally: _Tally,
        *,
        parts: int,
    ) -> Digest:
        return Digest(
            sections=_sections(notes, numbered),
            messages=len(numbered),
            units=len(units),
            prompts=tally.prompts,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            largest_prompt=tally.largest,
            invented_refs=tally.invented,
            uncited=tally.uncited,
            seconds=time.perf_counter() - tally.started,
            parts=parts,
            rounds=tally.rounds,
            cut_messages=tally.cut,
        )


def _pack_units(lines: Sequence[Line], room: int) -> list[list[Line]]:
    """Whole units where they fit; a unit larger than a part fills the current one and runs on."""
    by_unit: dict[int, list[Line]] = {}
    for line in lines:
        by_unit.setdefault(line.unit, []).append(line)
    parts: list[list[Line]] = [[]]
    used = 0
    for unit_lines in by_unit.values():
        size = sum(line.tokens for line in unit_lines) + 1  # the blank line before a unit
        if parts[-1] and used + size > room and size <= room:
            parts.append([])
            used = 0
        used += 1
        for line in unit_lines:
            if parts[-1] and used + line.tokens > room:
                parts.append([])
                used = 0
            parts[-1].append(line)
            used += line.tokens
    return [part for part in parts if part]


def _join_lines(lines: Sequence[Line]) -> str:
    return _join([(line.unit, line.text) for line in lines])


def _note_lines(notes: Sequence[Note]) -> str:
    return "\n".join(note.line() for note in notes)


def _with_example(system: str, example: tuple[str, str], user: str) -> list[Message]:
    # A worked example as a real exchange: small instruct models follow a shown reply better than a rule.
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": example[0]},
        {"role": "assistant", "content": example[1]},
        {"role": "user", "content": user},
    ]


def _join(lines: Sequence[tuple[int, str]]) -> str:
    out: list[str] = []
    for index, (unit, text) in enumerate(lines):
        if index and unit != lines[index - 1][0]:
            out.append("")
        out.append(text)
    return "\n".join(out)


def _one_line(text: str) -> str:
    # One message per line keeps numbers at line starts, where the model (and the parser) look for them.
    return re.sub(r"\s*\n\s*", " ", text).strip()
