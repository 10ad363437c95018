"""Slack's v0 request signing, shared by the client and its tests."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_VERSION = "v0"


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """Return the X-Slack-Signature value Slack would send for `body`.

    Slack signs ``v0:<timestamp>:<raw body>`` with HMAC-SHA256 keyed by the
    app's signing secret; the bot must see byte-for-byte the same body.
    """
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"
