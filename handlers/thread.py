"""A message already in a Slack conversation, as the QA handler and the agent's tools see it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadMessage:
    """A message already in the conversation on Slack's side (other people's replies included)."""

    ts: str
    user_id: str | None
    text: str
    from_ember: bool
