"""The model writes Markdown; Slack's `text` fields speak mrkdwn. Convert, and cut long text into messages.

mrkdwn is not Markdown: `*bold*`, `_italic_`, `~strike~`, `<url|text>`, no headings and no tables, and
`&`, `<`, `>` are control characters that must be sent as entities unless they form a Slack token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

# A fence opens with 3+ backticks or tildes, indented at most 3 spaces (CommonMark).
_FENCE_OPEN = re.compile(r"^ {0,3}(?P<marker>`{3,}|~{3,})(?P<info>.*)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_RULE = re.compile(r"^ {0,3}([-*_])( *\1){2,} *$")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(?P<title>.*?)(?:\s+#+)?\s*$")
_QUOTE = re.compile(r"^(?P<marks>\s*(?:>\s?)+)(?P<rest>.*)$")
_BULLET = re.compile(r"^(?P<indent>\s*)[-*+]\s+(?:\[(?P<task>[ xX])\]\s+)?(?P<rest>.*)$")
# Pieces of a line that pass through untouched (or nearly): code spans, Slack's own tokens
# (mentions, channels, <!here>, links), Markdown links and images, and backslash escapes.
_PROTECTED = re.compile(
    r"(?P<code>(?P<ticks>`+).+?(?P=ticks)(?!`))"
    r"|(?P<slack><(?:[@#!]|(?:https?|mailto):)[^<>\n]*>)"
    r"|(?P<link>!?\[(?P<label>[^\]\n]*)\]\(\s*(?P<url><[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))+)"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\s*\))"
    r"|(?P<escaped>\\[\\`*_{}\[\]()#+\-.!~|<>&])"
)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
# Python's dunder names, which models write unquoted: __init__.py, __name__, obj.__dict__ are not bold.
_DUNDER_NAMES = (
    "init main name dict class file doc all str repr call len eq hash new enter exit iter next slots version"
    " pycache future builtins getattr setattr getitem module post_init"
)
_DUNDER = rf"(?:{'|'.join(_DUNDER_NAMES.split())})__|[a-z0-9_]+__[.(\[]"
# Stands in for a converted bold `*` so the italic rule does not read it as `*italic*`.
_BOLD = "\ue002"
_EMPHASIS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*"), f"{_BOLD}_\\1_{_BOLD}"),
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), f"{_BOLD}\\1{_BOLD}"),
    (re.compile(rf"(?<![\w.])__(?!{_DUNDER})(?=\S)(.+?)(?<=\S)__(?!\w)"), f"{_BOLD}\\1{_BOLD}"),
    (re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])"), r"_\1_"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"~\1~"),
]
# Characters that would end or split a <url|text> token.
_URL_UNSAFE = {"|": "%7C", "<": "%3C", ">": "%3E", " ": "%20"}
RULE_TEXT = "———"
MIN_LIMIT = 32
LineKind = Literal["text", "open", "code", "close"]


def escape(text: str) -> str:
    """Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn for an LLM's Markdown, line by line; code blocks and code spans keep their text."""
    lines = markdown.replace("\r\n", "\n").split("\n")
    kinds = _classify(lines)
    out: list[str] = []
    i = 0
    while i < len(lines):
        if kinds[i][0] == "open":
            i = _convert_code_block(lines, kinds, i, out)
        elif _table_starts(lines, kinds, i):
            i = _convert_table(lines, kinds, i, out)
        else:
            out.append(_convert_line(lines[i]))
            i += 1
    return "\n".join(out)


# -- code fences -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fence:
    marker: str  # the opening run of backticks or tildes
    info: str  # what follows it (a language)


def _classify(lines: list[str]) -> list[tuple[LineKind, _Fence | None]]:
    """Each line's place relative to fenced code blocks, and the fence it belongs to."""
    kinds: list[tuple[LineKind, _Fence | None]] = []
    fence: _Fence | None = None
    for line in lines:
        if fence is None:
            fence = _opening_fence(line)
            kinds.append(("open", fence) if fence else ("text", None))
        elif _closes(line, fence):
            kinds.append(("close", fence))
            fence = None
        else:
            kinds.append(("code", fence))
    return kinds


def _opening_fence(line: str) -> _Fence | None:
    match = _FENCE_OPEN.match(line)
    if match is None or (match["marker"][0] == "`" and "`" in match["info"]):
        return None
    return _Fence(match["marker"], match["info"].strip())


def _closes(line: str, fence: _Fence) -> bool:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(fence.marker) and stripped == fence.marker[0] * len(stripped)


def _convert_code_block(lines: list[str], kinds: list[tuple[LineKind, _Fence | None]], i: int, out: list[str]) -> int:
    """Copy a fenced block as a Slack ``` block; returns the index after it.

    The language tag is dropped (Slack would show it as the first line of code), and an unclosed
    fence (an answer cut off mid-block) is closed so the rest of the message is not swallowed.
    """
    end = i + 1
    while end < len(lines) and kinds[end][0] == "code":
        end += 1
    code = [escape(line) for line in lines[i + 1 : end]]
    closed = end < len(lines)
    trailing_blank: list[str] = []
    while not closed and code and not code[-1].strip():
        trailing_blank.append(code.pop())
    out.extend(["```", *code, "```", *trailing_blank])
    return end + 1 if closed else end


# -- tables ------------------------------------------------------------------------------


def _table_starts(lines: list[str], kinds: list[tuple[LineKind, _Fence | None]], i: int) -> bool:
    return (
        i + 1 < len(lines)
        and kinds[i][0] == kinds[i + 1][0] == "text"
        and "|" in lines[i]
        and "|" in lines[i + 1]
        and _TABLE_SEPARATOR.match(lines[i + 1]) is not None
    )


def _convert_table(lines: list[str], kinds: list[tuple[LineKind, _Fence | None]], i: int, out: list[str]) -> int:
    """A Markdown table as aligned plain text in a code block (Slack has no tables)."""
    rows = [_cells(lines[i])]
    end = i + 2
    while end < len(lines) and kinds[end][0] == "text" and "|" in lines[end] and lines[end].strip():
        rows.append(_cells(lines[end]))
        end += 1
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    widths = [max(len(row[c]) for row in rows) for c in range(columns)]
    rendered = [_table_row(row, widths) for row in rows]
    rendered.insert(1, "-+-".join("-" * width for width in widths))
    out.extend(["```", *(escape(row) for row in rendered), "```"])
    return end


def _table_row(cells: list[str], widths: list[int]) -> str:
    while len(cells) > 1 and not cells[-1]:
        cells = cells[:-1]
    return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)).rstrip()


def _cells(row: str) -> list[str]:
    row = row.strip().removeprefix("|").removesuffix("|")
    return [_plain(cell.replace("\\|", "|").strip()) for cell in re.split(r"(?<!\\)\|", row)]


def _plain(cell: str) -> str:
    """Cell text without Markdown marks, which a code block would show literally."""
    cell = re.sub(r"!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)", r"\1 (\2)", cell)
    return re.sub(r"\*\*|__|`|~~", "", cell)


# -- one line of text --------------------------------------------------------------------


def _convert_line(line: str) -> str:
    if _RULE.match(line):
        return RULE_TEXT
    if heading := _HEADING.match(line):
        # Bold marks inside a heading would nest with the bold we wrap it in.
        title = _inline(re.sub(r"\*\*|__", "", heading["title"]))
        return f"*{title}*" if title else ""
    if quote := _QUOTE.match(line):
        # Slack quotes with a leading ">", so that one stays raw.
        return "> " + _convert_line(quote["rest"])
    if bullet := _BULLET.match(line):
        task = {" ": "☐ ", "x": "☑ ", "X": "☑ "}.get(bullet["task"] or "", "")
        return f"{bullet['indent']}• {task}{_inline(bullet['rest'])}"
    return _inline(line)


def _inline(text: str) -> str:
    """Emphasis, strike and links converted; everything else escaped except the protected pieces."""
    pieces: list[str] = []

    def protect(match: re.Match[str]) -> str:
        pieces.append(_protected_piece(match))
        return f"\ue000{len(pieces) - 1}\ue001"

    text = _PROTECTED.sub(protect, re.sub("[\ue000-\ue002]", "", text))
    text = escape(text)
    for pattern, replacement in _EMPHASIS:
        text = pattern.sub(replacement, text)
    text = text.replace(_BOLD, "*")
    return _PLACEHOLDER.sub(lambda m: pieces[int(m[1])], text)


def _protected_piece(match: re.Match[str]) -> str:
    if match["code"]:
        # Still entity-escaped: Slack reads &, < and > as control characters inside code too.
        return escape(match["code"])
    if match["slack"]:
        return match["slack"]
    if match["link"]:
        return _link(match["label"], match["url"])
    return escape(match["escaped"][1])


def _link(label: str, url: str) -> str:
    url = url.removeprefix("<").removesuffix(">")
    url = "".join(_URL_UNSAFE.get(char, char) for char in url)
    text = _inline(label) if label.strip() else ""
    return f"<{url}|{text}>" if text and label != url else f"<{url}>"


# -- splitting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Where to cut text that is too long for one message."""

    pos: int  # text[:pos] goes in this message
    close: str = ""  # appended to it when the cut falls inside a code block
    reopen: str = ""  # put before the rest to reopen that code block


_PARAGRAPH, _LINE, _CODE_LINE, _WORD = range(4)
# (kind, whether it must lie in the second half of the window), most preferred first: any boundary
# outside code beats cutting a code block, and a near boundary beats a better-ranked far one only
# between paragraphs and lines.
_PREFERENCE = [
    (_PARAGRAPH, True),
    (_LINE, True),
    (_PARAGRAPH, False),
    (_LINE, False),
    (_CODE_LINE, True),
    (_CODE_LINE, False),
    (_WORD, True),
    (_WORD, False),
]


def split_message(text: str, limit: int) -> list[str]:
    """Cut `text` into parts of at most `limit` characters, at paragraph, then line, then word boundaries.

    Cuts avoid fenced code blocks; a block that must be cut is closed at the cut and reopened in the next
    part. Separators stay at the end of the earlier part, so without such a cut the parts join back into
    `text` exactly. Trailing whitespace never forces a cut (a part may carry it past `limit`; Slack trims
    it). Blank text gives no parts.
    """
    _check_limit(limit)
    if not text.strip():
        return []
    parts: list[str] = []
    while len(text.rstrip()) > limit:
        split = find_split(text, limit)
        parts.append(text[: split.pos] + split.close)
        text = split.reopen + text[split.pos :]
    parts.append(text)
    return parts


def find_split(text: str, limit: int, *, floor: int = 0) -> Split:
    """The best cut of `text` at or before `limit` and at or after `floor` (text already sent, when streaming).

    Boundaries in the second half of the window come first, so parts are not needlessly small.
    """
    _check_limit(limit)
    lines = text[: _end_of_line(text, limit)].split("\n")
    kinds = _classify(lines)
    lowest = max(floor, 1, len(text) - len(text.lstrip()) + 1)
    candidates = list(_candidates(lines, kinds))
    for rank, far in _PREFERENCE:
        least = max(lowest, limit // 2) if far else lowest
        fits = [c for c in candidates if c.rank == rank and least <= c.split.pos <= limit - len(c.split.close)]
        if fits:
            return max(fits, key=lambda c: c.split.pos).split
    return _hard_split(text, lines, kinds, limit, lowest)


@dataclass(frozen=True)
class _Candidate:
    rank: int
    split: Split


def _candidates(lines: list[str], kinds: list[tuple[LineKind, _Fence | None]]) -> Iterator[_Candidate]:
    offset = 0
    for i, line in enumerate(lines):
        kind, fence = kinds[i]
        if kind == "text":
            for space in re.finditer(r"[ \t]+(?=\S)", line):
                yield _Candidate(_WORD, Split(offset + space.end()))
        end = offset + len(line) + 1
        if i + 1 < len(lines):
            if kind in ("text", "close"):
                yield _Candidate(_PARAGRAPH if kind == "text" and not line.strip() else _LINE, Split(end))
            elif kind == "code" and kinds[i + 1][0] == "code" and fence is not None:
                # Never right after the opening line (an empty block) or before the closing one.
                yield _Candidate(_CODE_LINE, Split(end, fence.marker, _reopen(fence)))
        offset = end


def _hard_split(
    text: str, lines: list[str], kinds: list[tuple[LineKind, _Fence | None]], limit: int, lowest: int
) -> Split:
    """No boundary fits: cut at the limit, closing and reopening a code block if the cut is inside one."""
    index = min(text[: limit - 1].count("\n"), len(kinds) - 1)
    kind, fence = kinds[index]
    if kind not in ("code", "close") or fence is None:
        return Split(max(limit, lowest))
    starts = _line_starts(lines)
    pos = limit - len(fence.marker) - 1
    if kind == "close":
        pos = min(pos, starts[index])  # the whole closing line goes to the next part
    opening = max(i for i in range(index + 1) if kinds[i][0] == "open")
    # At least one character of code, or the part would be an empty block and the next one this one.
    pos = max(pos, lowest, starts[opening + 1] + 1)
    close = fence.marker if text[pos - 1] == "\n" else "\n" + fence.marker
    return Split(pos, close, _reopen(fence))


def _line_starts(lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    return starts


def _check_limit(limit: int) -> None:
    # Below this, fence lines and a reopened block's first line leave no room for content.
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT} characters, not {limit}")


def _reopen(fence: _Fence) -> str:
    info = fence.info if len(fence.info) <= 20 else ""
    return f"{fence.marker}{info}\n"


def _end_of_line(text: str, index: int) -> int:
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline
