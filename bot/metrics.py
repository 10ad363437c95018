"""Prometheus metrics for one Ember process, in its own registry (nothing global, nothing at import)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from models.base import Completion

_LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)
TOKENS_PER_SECOND_WINDOW = 60.0


class Metrics:
    def __init__(self, *, queue_depth: Callable[[], int], model_version: Callable[[], str]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ember_requests", "Answers finished, by how they ended", ["finish_reason"], registry=self.registry
        )
        self.tokens = Counter("ember_generated_tokens", "Tokens generated", registry=self.registry)
        self.latency = Histogram(
            "ember_request_latency_seconds",
            "From question to finished answer",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "ember_time_to_first_token_seconds",
            "From question to the first generated token",
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.swaps = Counter("ember_model_swaps", "Model swaps, by outcome", ["outcome"], registry=self.registry)
        Gauge(
            "ember_queue_depth", "Questions submitted to the model and not finished", registry=self.registry
        ).set_function(lambda: float(queue_depth()))
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        Gauge(
            "ember_tokens_per_second",
            f"Tokens generated per second over the last {TOKENS_PER_SECOND_WINDOW:.0f} s",
            registry=self.registry,
        ).set_function(self.tokens_per_second)
        self._version = Gauge(
            "ember_model_info", "The model version serving new requests", ["version"], registry=self.registry
        )
        self._model_version = model_version

    def observe(self, completion: Completion) -> None:
        self.requests.labels(completion.finish_reason).inc()
        self.tokens.inc(completion.completion_tokens)
        self.latency.observe(completion.seconds)
        if completion.time_to_first_token is not None:
            self.ttft.observe(completion.time_to_first_token)
        with self._lock:
            self._recent.append((time.monotonic(), completion.completion_tokens))

    def tokens_per_second(self) -> float:
        cutoff = time.monotonic() - TOKENS_PER_SECOND_WINDOW
        with self._lock:
            while self._recent and self._recent[0][0] < cutoff:
                self._recent.popleft()
            return sum(tokens for _, tokens in self._recent) / TOKENS_PER_SECOND_WINDOW

    def render(self) -> bytes:
        self._version.clear()
        self._version.labels(self._model_version()).set(1)
        return generate_latest(self.registry)
