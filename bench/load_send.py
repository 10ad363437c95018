"""The load's sender for bench.load: runs in a process of its own, so that the workspace serving
Ember's Web API calls does not slow the sender's clock."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from bench.load_bots import SECRET
from playground import SlackClient


@dataclass(frozen=True)
class Ack:
    sent_at: float  # seconds after the load began
    seconds: float  # from the POST going out to its response
    status: int | None  # None: no response (refused, reset or timed out)


def _post(client: SlackClient, envelope: dict[str, Any], began: float) -> Ack:
    started = time.perf_counter()
    try:
        status: int | None = client.send_event(envelope).status_code
    except requests.RequestException:
        status = None
    return Ack(started - began, time.perf_counter() - started, status)


def send_at_once(url: str, envelopes: list[dict[str, Any]]) -> list[Ack]:
    """Every envelope POSTed at the same moment, each on a connection of its own."""
    clients = [SlackClient(url, SECRET, timeout=30) for _ in envelopes]
    ready = threading.Barrier(len(envelopes))
    began = time.perf_counter()

    def one(index: int) -> Ack:
        ready.wait(timeout=60)
        try:
            return _post(clients[index], envelopes[index], began)
        finally:
            # Idle keep-alive connections would count against the server's connection limit (waitress
            # accepts about 100); a sender that has its answer lets go, so later ones measure the queue,
            # not the client's timeout.
            clients[index].session.close()

    with ThreadPoolExecutor(len(envelopes)) as pool:
        return list(pool.map(one, range(len(envelopes))))


def send_steadily(url: str, envelopes: list[dict[str, Any]], rate: float) -> list[Ack]:
    """One envelope every 1/rate s on a fixed schedule (open loop: a slow ack does not slow the sender)."""
    local = threading.local()
    began = time.perf_counter() + 0.2

    def one(index: int) -> Ack:
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if not hasattr(local, "client"):
            local.client = SlackClient(url, SECRET, timeout=30)
        return _post(local.client, envelopes[index], began)

    # Enough senders that acks of up to about 3 s (Slack's deadline) still keep the pace.
    with ThreadPoolExecutor(min(len(envelopes), max(8, int(rate * 3)))) as pool:
        return list(pool.map(one, range(len(envelopes))))


def _ignore_interrupts() -> None:
    # Ctrl-C is the parent's to handle; it ends this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
