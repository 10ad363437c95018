"""Delivery of events to the app, as Slack delivers them: from one background queue, in order,
signed, and retried after a failure with Slack's retry headers."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from .client import SlackClient

log = logging.getLogger(__name__)

# Slack gives an app 3 s to answer; a slow CPU box gets more.
TIMEOUT = 10.0
# Waits before each redelivery of an event the app did not take (Slack retries three times).
RETRY_DELAYS = (0.5, 2.0, 5.0)


@dataclass(frozen=True)
class Job:
    kind: str  # "event" (retried like Slack) or "interaction" (sent once)
    payload: dict[str, Any]


class Delivery:
    """Delivers events to the app from one background thread, in order, retrying like Slack:
    up to three redeliveries, marked with X-Slack-Retry-Num/-Reason, after a non-2xx answer,
    a timeout or a failed connection."""

    def __init__(self, url: Callable[[], str], signing_secret: str) -> None:
        self._url, self._secret = url, signing_secret  # the URL is read per job: it is set after start
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="playground-delivery", daemon=True)
        self._thread.start()

    def put(self, job: Job) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        self._thread.join(timeout=TIMEOUT + 1)
        self._session.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stopping.is_set():
                return
            try:
                self._deliver(job)
            except Exception:
                log.exception("delivering a %s to Ember failed", job.kind)

    def _deliver(self, job: Job) -> None:
        url = self._url()
        what = describe(job)
        if not url:
            log.warning("Ember is not connected to the playground; dropped %s", what)
            return
        client = SlackClient(url, self._secret, timeout=TIMEOUT, session=self._session)
        attempts = len(RETRY_DELAYS) + 1 if job.kind == "event" else 1
        reason = ""
        for attempt in range(attempts):
            if attempt and self._stopping.wait(RETRY_DELAYS[attempt - 1]):
                return
            try:
                if job.kind == "event":
                    retry = attempt or None
                    answer = client.send_event(job.payload, retry_num=retry, retry_reason=reason or "http_timeout")
                else:
                    answer = client.send_interaction(job.payload)
            except requests.Timeout:
                reason = "http_timeout"
            except requests.RequestException:
                reason = "connection_failed"
            else:
                if 200 <= answer.status_code < 300:
                    return
                reason = "http_error"
            log.warning("delivering %s to %s failed (%s, attempt %d of %d)", what, url, reason, attempt + 1, attempts)
        log.error("gave up delivering %s to %s", what, url)


def describe(job: Job) -> str:
    if job.kind == "event":
        return f"event {job.payload.get('event_id')} ({job.payload.get('event', {}).get('type')})"
    return f"interaction {job.payload.get('type')}"
