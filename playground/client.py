"""`SlackClient`: plays Slack's side of the conversation towards the bot,
POSTing events, slash commands and interactions signed exactly as Slack does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests

from .events import DEFAULT_VERIFICATION_TOKEN, command_fields
from .signing import sign

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Slack's own User-Agent, in case the bot logs or checks it.
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


class SlackClient:
    """Sends signed requests to the bot's Slack endpoint."""

    def __init__(
        self,
        bot_url: str,
        signing_secret: str,
        timeout: float = 10.0,
        verification_token: str = DEFAULT_VERIFICATION_TOKEN,
        session: requests.Session | None = None,
    ) -> None:
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.timeout = timeout
        self.verification_token = verification_token
        self.session = session or requests.Session()

    def send_event(
        self,
        envelope: Mapping[str, Any],
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> requests.Response:
        """POST an Events API envelope; `retry_num` marks it as Slack's redelivery."""
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        body = json.dumps(envelope).encode()
        return self._post(body, JSON, timestamp, bad_signature, headers)

    def send_command(
        self,
        command: str = "/ember",
        text: str = "",
        *,
        channel_id: str,
        user_id: str,
        team_id: str = "T0001",
        response_url: str = "",
        channel_name: str = "",
        user_name: str = "",
        trigger_id: str | None = None,
        api_app_id: str = "A0001",
        timestamp: int | None = None,
        bad_signature: bool = False,
    ) -> requests.Response:
        """POST a slash command, form-encoded like Slack."""
        fields = command_fields(
            command=command,
            text=text,
            channel_id=channel_id,
            user_id=user_id,
            team_id=team_id,
            response_url=response_url,
            channel_name=channel_name,
            user_name=user_name,
            api_app_id=api_app_id,
            verification_token=self.verification_token,
            trigger_id=trigger_id,
        )
        return self.send_form(fields, timestamp=timestamp, bad_signature=bad_signature)

    def send_interaction(
        self, payload: Mapping[str, Any], timestamp: int | None = None, bad_signature: bool = False
    ) -> requests.Response:
        """POST an interaction as Slack does: a form with one `payload` JSON field."""
        return self.send_form({"payload": json.dumps(payload)}, timestamp=timestamp, bad_signature=bad_signature)

    def send_form(
        self, fields: Mapping[str, str], timestamp: int | None = None, bad_signature: bool = False
    ) -> requests.Response:
        """POST arbitrary form fields (e.g. `LocalSlack.command_payload(...)`)."""
        return self._post(urlencode(fields).encode(), FORM, timestamp, bad_signature)

    def send_raw(
        self, body: bytes, content_type: str, timestamp: int | None = None, bad_signature: bool = False
    ) -> requests.Response:
        """POST an arbitrary signed body, for malformed-input tests."""
        return self._post(body, content_type, timestamp, bad_signature)

    def _post(
        self,
        body: bytes,
        content_type: str,
        timestamp: int | None,
        bad_signature: bool,
        extra_headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = sign(self.signing_secret, ts, body)
        if bad_signature:
            signature = _corrupt(signature)
        headers = {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            **(extra_headers or {}),
        }
        # `data=bytes` sends exactly the bytes that were signed.
        return self.session.post(self.bot_url, data=body, headers=headers, timeout=self.timeout)


def _corrupt(signature: str) -> str:
    """Flip the last hex digit: well-formed, but wrong."""
    last = signature[-1]
    return signature[:-1] + ("0" if last != "0" else "1")
