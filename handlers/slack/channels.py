"""Which kind of conversation a channel is, asked of Slack once per channel and remembered."""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class ChannelTypes:
    """Slack's channel_type for a channel: channel (public), group (private), im or mpim.

    app_mention events and slash commands do not carry it, and it decides what may be remembered
    where. When Slack cannot tell us, assume private: that errs on the side of not sharing (and is
    not remembered, so the next question asks again).
    """

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def of(self, client: WebClient, channel_id: str) -> str:
        with self._lock:
            known = self._known.get(channel_id)
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
            self._known[channel_id] = kind
        return kind
