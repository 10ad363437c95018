"""Socket Mode's front: what bot.server does for HTTP, for envelopes that come over the WebSocket.

Every envelope is checked (handlers.slack.envelopes) before Bolt reads it. Socket Mode has no
status codes: a payload whose shape is not one Slack sends is acknowledged, so Slack does not send it
again, and logged with the reason; one Ember has no listener for is acknowledged and goes no further.
"""

from __future__ import annotations

import logging
from time import time

from slack_bolt import BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import build_headers, send_response
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from handlers.slack import envelopes

log = logging.getLogger(__name__)


class CheckedSocketModeHandler(SocketModeHandler):
    """Bolt's Socket Mode handler, with the envelope check in front of its dispatch."""

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        start = time()
        verdict = envelopes.check(req.payload)
        if verdict != envelopes.OK:
            if verdict != envelopes.IGNORE:
                log.warning("refused an envelope from Slack's socket: %s", verdict)
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        request = BoltRequest(
            mode="socket_mode",
            body=req.payload,
            headers=build_headers(req),
            # As in bot.server: Bolt may log through the context before it has set a logger on it.
            context={"logger": self.app.logger},
        )
        send_response(client, req, self.app.dispatch(request), start)
