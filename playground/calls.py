"""Recording of Web API calls and scripted failures.

Tests assert on what the bot *sent*, so every request is kept, including the
ones that failed; `CallLog.wait_for` lets a test block until the bot, running
in another thread or process, has made the calls it expects.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Predicate = Callable[["ApiCall"], bool]

# Enough history to debug a failing wait without flooding the test report.
_MAX_CALLS_IN_MESSAGE = 40
_MAX_ARGS_CHARS = 240


@dataclass(frozen=True)
class ApiCall:
    """One request the fake received, with what it answered."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the fake answered ``ok: true``."""
        return bool(self.response.get("ok"))

    def describe(self) -> str:
        """One line for assertion messages."""
        args = json.dumps(self.args, default=str, sort_keys=True)
        if len(args) > _MAX_ARGS_CHARS:
            args = args[:_MAX_ARGS_CHARS] + "..."
        outcome = "ok" if self.ok else f"error={self.response.get('error')!r}"
        return f"{self.at:.3f} {self.method} [{self.status} {outcome}] {args}"


class CallLog:
    """Thread-safe, append-only list of `ApiCall` with blocking waits."""

    def __init__(self) -> None:
        self._calls: list[ApiCall] = []
        self._changed = threading.Condition()

    def record(self, call: ApiCall) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    def all(self) -> list[ApiCall]:
        with self._changed:
            return list(self._calls)

    def clear(self) -> None:
        with self._changed:
            self._calls.clear()

    def matching(self, method: str, predicate: Predicate | None = None) -> list[ApiCall]:
        with self._changed:
            return [c for c in self._calls if _matches(c, method, predicate)]

    def wait_for(
        self,
        method: str,
        predicate: Predicate | None = None,
        timeout: float = 30.0,
        count: int = 1,
    ) -> list[ApiCall]:
        """Block until `count` calls match; return all matching calls so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self._calls if _matches(c, method, predicate)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    break
                self._changed.wait(remaining)
            if len(found) >= count:
                return found
            raise AssertionError(self._timeout_message(method, predicate, timeout, count, found))

    def _timeout_message(
        self,
        method: str,
        predicate: Predicate | None,
        timeout: float,
        count: int,
        found: list[ApiCall],
    ) -> str:
        what = f"{count} call(s) to {method}" + (" matching the predicate" if predicate else "")
        lines = [f"timed out after {timeout}s waiting for {what}; {len(found)} matched."]
        lines.append(f"Recorded calls ({len(self._calls)}, last {_MAX_CALLS_IN_MESSAGE} shown):")
        lines += [f"  {c.describe()}" for c in self._calls[-_MAX_CALLS_IN_MESSAGE:]]
        if not self._calls:
            lines.append("  (none)")
        return "\n".join(lines)


def _matches(call: ApiCall, method: str, predicate: Predicate | None) -> bool:
    return call.method == method and (predicate is None or predicate(call))


@dataclass(frozen=True)
class Fault:
    """A scripted failure for one call."""

    error: str
    status: int
    retry_after: int | None

    def headers(self) -> dict[str, str]:
        # Slack only sends Retry-After with 429; slack_sdk's retry handler reads it.
        if self.status == 429 and self.retry_after is not None:
            return {"Retry-After": str(self.retry_after)}
        return {}


class FaultPlan:
    """Per-method queues of failures to hand out before normal handling."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, method: str, fault: Fault, times: int) -> None:
        with self._lock:
            self._queues.setdefault(method, deque()).extend([fault] * times)

    def take(self, method: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get(method)
            return queue.popleft() if queue else None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
