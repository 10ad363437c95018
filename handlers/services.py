"""What listeners need, handed to them through Bolt's context (see bot.app), never through globals."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from db import Database
from handlers.qa import QAHandler
from handlers.recall import Recall
from handlers.streaming import StreamingSupport

log = logging.getLogger(__name__)

CONTEXT_KEY = "ember"


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
    # Workspaces where Slack's native streaming was refused, so later answers go straight to post-and-update.
    streaming: StreamingSupport = field(default_factory=StreamingSupport)
    _channel_types: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def channel_type(self, client: WebClient, channel_id: str) -> str:
        """Slack's channel_type for a channel: channel (public), group (private), im or mpim.

        app_mention events do not carry it, and it decides what may be remembered where. When Slack
        cannot tell us, assume private: that errs on the side of not sharing.
        """
        with self._lock:
            known = self._channel_types.get(channel_id)
        if known:
            return known
        try:
            info = client.conversations_info(channel=channel_id)["channel"]
        except SlackApiError as exc:
            log.warning("conversations.info failed for %s: %s", channel_id, exc.response.get("error"))
            return "im" if channel_id.startswith("D") else "group"
        kind = (
            "im"
            if info.get("is_im")
            else "mpim"
            if info.get("is_mpim")
            else "group"
            if info.get("is_private")
            else "channel"
        )
        with self._lock:
            self._channel_types[channel_id] = kind
        return kind
