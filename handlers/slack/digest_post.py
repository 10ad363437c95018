"""How a digest looks in Slack: a short headline message with the digest in its thread, every bullet
linked to the messages it came from, split to fit Slack's limits, feedback buttons on the headline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from handlers.qa.digest import Bullet, Digest, SourceMessage
from handlers.slack.mrkdwn import escape

# Slack renders a section's text up to 3,000 characters; one message per part keeps each readable.
PART_CHARS = 3_000
DIGEST_UP = "ember_digest_up"
DIGEST_DOWN = "ember_digest_down"
FEEDBACK_BLOCK = "ember_digest_feedback"

Block = dict[str, Any]


@dataclass(frozen=True)
class ChannelPart:
    """One channel's share of a digest (a channel digest has one; a personal recap one per channel)."""

    channel_id: str
    channel_name: str
    digest: Digest
    messages: int
    threads: int
    truncated: bool


def permalink(workspace_url: str, channel_id: str, message: SourceMessage) -> str:
    """Slack's permalink format (what chat.getPermalink returns), built without a call per message."""
    link = f"{workspace_url.rstrip('/')}/archives/{channel_id}/p{message.ts.replace('.', '')}"
    if message.thread_ts and message.thread_ts != message.ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel_id}"
    return link


def headline(title: str, window: tuple[datetime, datetime], parts: Sequence[ChannelPart]) -> str:
    messages = sum(part.messages for part in parts)
    threads = sum(part.threads for part in parts)
    counts = f"{messages:,} message{'s' * (messages != 1)} in {threads} thread{'s' * (threads != 1)}"
    return f"{title}, {when(window)}: {counts}"


def when(window: tuple[datetime, datetime]) -> str:
    start, end = window
    if end - start <= timedelta(hours=25):  # a day, give or take a change of clocks
        return f"{end:%a} {end.day} {end:%b}"
    return f"{start.day} {start:%b} – {end:%a} {end.day} {end:%b}"


def headline_blocks(text: str, run_id: int) -> list[Block]:
    buttons = [
        _button(DIGEST_UP, "👍 Useful", f"up:{run_id}"),
        _button(DIGEST_DOWN, "👎 Not useful", f"down:{run_id}"),
    ]
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(text)}},
        {"type": "actions", "block_id": FEEDBACK_BLOCK, "elements": buttons},
    ]


def thread_parts(parts: Sequence[ChannelPart], workspace_url: str, *, max_messages: int) -> list[str]:
    """The digest's text, split into messages of at most PART_CHARS, never inside a bullet."""
    lines: list[str] = []
    for part in parts:
        if len(parts) > 1:
            lines.append(f"*<#{part.channel_id}>*")
        for section, bullets in part.digest.sections.items():
            lines.append(f"*{section}*")
            lines.extend(_bullet(bullet, part.channel_id, workspace_url) for bullet in bullets)
        if part.truncated:
            lines.append(
                f"_This window had more than {max_messages:,} messages; I read the newest {max_messages:,} "
                "(EMBER_DIGEST_MAX_MESSAGES)._"
            )
        if part.digest.empty and part.messages:
            lines.append("_Nothing in this part that I could summarise with a source to link._")
    return _split(lines)


def _bullet(bullet: Bullet, channel_id: str, workspace_url: str) -> str:
    owner = f" (owner: {escape(bullet.owner)})" if bullet.owner else ""
    refs = " ".join(
        f"<{permalink(workspace_url, channel_id, source)}|[{number}]>"
        for number, source in enumerate(bullet.sources, start=1)
    )
    return f"• {escape(bullet.text)}{owner} {refs}"


def _split(lines: list[str]) -> list[str]:
    parts: list[str] = []
    current = ""
    for line in lines:
        line = line[: PART_CHARS - 1]
        if current and len(current) + 1 + len(line) > PART_CHARS:
            parts.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        parts.append(current)
    return parts


def _button(action_id: str, text: str, value: str) -> Block:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": value,
    }
