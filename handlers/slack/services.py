"""What listeners need, handed to them through Bolt's context (see bot.app), never through globals."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from slack_sdk import WebClient

from db import Database
from db.memory import Embeds
from db.vector_index import VectorIndex
from handlers.qa.handler import QAHandler
from handlers.qa.recall import Recall
from handlers.slack.channels import ChannelTypes
from handlers.slack.digests import DigestRunner
from handlers.slack.streaming import StreamingSupport

CONTEXT_KEY = "ember"


class HomeViewers:
    """Who opened their Home tab since start-up (user -> workspace), to publish it again on a change."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def opened(self, user_id: str, workspace_id: str) -> None:
        with self._lock:
            self._seen[user_id] = workspace_id

    def seen(self) -> dict[str, str]:
        with self._lock:
            return dict(self._seen)


@dataclass
class Services:
    db: Database
    qa: QAHandler
    # Pinned facts and corrections; None runs Ember without day-time memory.
    recall: Recall | None = None
    # Questions in the model's queue beyond which askers are told they wait (0: never tell).
    max_queue: int = 0
    # Seconds between updates of a streaming answer.
    stream_interval: float = 1.0
    # How long a claimed event stays claimed before a retry may take it over (the worker died).
    event_lease: timedelta = timedelta(minutes=10)
    # This process, as the owner of its claims (db.claims), and how long an owner may go without a
    # heartbeat before its claims are taken over. None: claims name no owner and only the lease counts.
    owner: str | None = None
    owner_stale_after: timedelta = timedelta(seconds=30)
    # Workspaces where Slack's native streaming was refused, so later answers go straight to post-and-update.
    streaming: StreamingSupport = field(default_factory=StreamingSupport)
    channels: ChannelTypes = field(default_factory=ChannelTypes)
    home_viewers: HomeViewers = field(default_factory=HomeViewers)
    # Digests: the runner (None where there is no Slack client to read with), the time zone for people
    # whose own Slack doesn't say, and who to tell when subscriptions change (the scheduler, if here).
    digests: DigestRunner | None = None
    digest_timezone: str = "UTC"
    on_digests_changed: Callable[[], object] | None = None
    # Runs an answer off Bolt's listener thread (the bot's answer pool); None runs it where it is called.
    background: Callable[[Callable[[], None]], object] | None = None

    def digests_changed(self) -> None:
        # Without a scheduler in this process, the one that has it re-reads the table on its own.
        if self.on_digests_changed is not None:
            self.on_digests_changed()

    def in_background(self, work: Callable[[], None]) -> None:
        if self.background is None:
            work()
        else:
            self.background(work)

    def channel_type(self, client: WebClient, channel_id: str) -> str:
        return self.channels.of(client, channel_id)

    @property
    def embedder(self) -> Embeds | None:
        """What new memories are embedded with; None stores them to be embedded later."""
        return self.recall.embedder if self.recall is not None else None

    @property
    def index(self) -> VectorIndex | None:
        return self.recall.index if self.recall is not None else None
