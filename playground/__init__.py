"""A local, Slack-compatible stand-in for tests.

`LocalSlack` serves the Web API over real HTTP (point slack_sdk's
``WebClient(base_url=slack.api_url)`` at it), keeps workspace state, records
every call and can inject failures; `LocalSlack.seed` back-dates history
(days of talk, threads, reactions) without sending events. `SlackClient`
plays Slack towards the bot, sending signed events, commands and
interactions. `LocalSlack.socket_mode` is the Socket Mode side instead:
apps.connections.open with the app-level token, then a WebSocket that
delivers envelopes and records the app's acks.
`sign` is Slack's v0 request signature.
"""

from __future__ import annotations

from .calls import ApiCall
from .client import SlackClient
from .methods import METHODS, SlackError
from .server import LocalSlack
from .signing import sign
from .workspace import Workspace

__all__ = ["METHODS", "ApiCall", "LocalSlack", "SlackClient", "SlackError", "Workspace", "sign"]
