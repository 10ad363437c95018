"""Who may see what Ember remembers. Every reader of stored talk goes through here: retrieval, tools,
digests and training data alike, so the rules live in one place.

- Nothing crosses workspaces.
- Something said in a public channel may be recalled anywhere in its workspace.
- Something said in a DM, a group DM, a private channel (or anywhere Ember could not tell) may be
  recalled only in that same conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, or_

# Slack's channel_type for public channels. Everything else ("group", "im", "mpim", "terminal",
# "unknown", or a type Slack adds later) is treated as private.
PUBLIC = "channel"


@dataclass(frozen=True)
class Audience:
    """Where a question is being asked: what may be shown there."""

    workspace_id: str
    channel_id: str


class Placed(Protocol):
    """Anything stored with where it was said (turns, memories)."""

    workspace_id: str
    channel_id: str
    channel_type: str


def is_public(channel_type: str) -> bool:
    return channel_type == PUBLIC


def can_see(audience: Audience, item: Placed) -> bool:
    if item.workspace_id != audience.workspace_id:
        return False
    return is_public(item.channel_type) or item.channel_id == audience.channel_id


def visible_to(audience: Audience, table: Any) -> ColumnElement[bool]:
    """The same rule as `can_see`, as a SQL condition on a table with workspace/channel columns."""
    return and_(
        table.workspace_id == audience.workspace_id,
        or_(table.channel_type == PUBLIC, table.channel_id == audience.channel_id),
    )


def shareable_for_training(item: Placed, *, include_private: bool) -> bool:
    """Training data leaves the conversation it came from (into weights every channel uses)."""
    return include_private or is_public(item.channel_type)


def channel_digest_holds(*, channel_id: str, posted_in: str) -> bool:
    """A channel digest holds its own channel's talk and nothing else."""
    return channel_id == posted_in


def dm_digest_holds(*, channel_type: str, recipient_is_member: bool, recap: bool) -> bool:
    """Whether a digest sent to one person by DM may hold a conversation's talk.

    A recap covers the channels the person and Ember share, so it needs membership whatever the channel;
    a catch-up or a thread summary asked for by the person needs only that they can read it (a public
    channel, or a private one they are a member of). A private conversation never reaches a non-member."""
    if recap:
        return recipient_is_member
    return recipient_is_member or is_public(channel_type)
