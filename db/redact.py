"""Secrets never reach the database or a prompt: Slack tokens, API keys, private keys, URL passwords.

Applied where rows are written (turns, memories, votes: db.repo, db.memory, db.feedback) and once
where a prompt is assembled (the agent, before every model call), so no caller has to remember it.
Both layers import it from here: db is the lowest layer. Patterns err towards redacting: a false
positive costs a word, a miss leaks a key.
"""

from __future__ import annotations

import re

MARK = "[redacted]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole block.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), MARK),
    # Slack tokens (bot, user, app, config, refresh) and webhook URLs.
    (re.compile(r"\bx(?:ox[abposrte]|app)-[A-Za-z0-9-]{8,}"), MARK),
    (re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"), MARK),
    # Well-known key formats: OpenAI/Anthropic-style, GitHub, AWS access keys, Google, Stripe, JWTs.
    (re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"), MARK),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"), MARK),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MARK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MARK),
    (re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"), MARK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MARK),
    # Bearer tokens in pasted headers.
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{16,}"), rf"\g<1>{MARK}"),
    # Passwords in URLs: scheme://user:password@host keeps the user and host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(@)"), rf"\g<1>{MARK}\g<2>"),
    # key = value assignments whose name says secret.
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd|pwd)"
            r"\s*[:=]\s*[\"']?)[^\s\"']{6,}"
        ),
        rf"\g<1>{MARK}",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
