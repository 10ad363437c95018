"""The Web API method table: Slack method name -> handler.

To support a new method, write a handler ``(CallContext) -> dict`` in the
module for its family and add it to that module's ``HANDLERS``.
"""

from __future__ import annotations

from . import chat, conversations, misc, stream, views
from .base import CallContext, Handler, Response, SlackError

METHODS: dict[str, Handler] = {
    **chat.HANDLERS,
    **stream.HANDLERS,
    **conversations.HANDLERS,
    **misc.HANDLERS,
    **views.HANDLERS,
}

__all__ = ["METHODS", "CallContext", "Handler", "Response", "SlackError"]
