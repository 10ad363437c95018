from __future__ import annotations

import pytest

from db.redact import MARK, redact

SECRETS = [
    ("my token is xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp", "xoxb-1234567890"),
    ("app token xapp-1-A0123-456789-abcdef0123456789", "xapp-1-A0123"),
    ("OPENAI key sk-proj-abcdefghijklmnopqrstuvwx1234", "sk-proj-abcdef"),
    ("github ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdef"),
    ("aws AKIAIOSFODNN7EXAMPLE and more", "AKIAIOSFODNN7EXAMPLE"),
    ("google AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA"),
    ("db at postgresql://ember:hunter2secret@db.internal:5432/ember", "hunter2secret"),
    ("Authorization: Bearer abcdefghijklmnop1234567890", "abcdefghijklmnop1234567890"),
    ("password=CorrectHorseBattery", "CorrectHorseBattery"),
    ('api_key: "q8Zr3k9LmN2pX"', "q8Zr3k9LmN2pX"),
    ("hook https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX", "XXXXXXXXXXXXXXXX"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert MARK in cleaned


def test_ordinary_talk_is_left_alone() -> None:
    text = (
        "The VPN host is vpn.acme.internal; see https://wiki.acme.internal/vpn and ask <@U123>. "
        "Password reset is self-service."
    )
    assert redact(text) == text


def test_context_around_a_secret_survives() -> None:
    assert redact("connect to https://ember:s3cretpass@db.acme.internal/x now") == (
        f"connect to https://ember:{MARK}@db.acme.internal/x now"
    )
