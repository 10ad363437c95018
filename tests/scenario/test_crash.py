"""A redelivery storm with `kill -9` midway, against real `ember run` processes: every mention answered
exactly once. Slack's retry schedule (about 1 and 5 minutes after a failed delivery) is compressed to
seconds; the heartbeat to half a second, so a dead owner is noticed within 1.5 s.
"""

from __future__ import annotations

import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from handlers.slack.feedback import FEEDBACK_ACTION
from playground import LocalSlack, SlackClient
from tests.conftest import SIGNING_SECRET
from tests.support.cli import ember_env, free_port, start_ember_run
from tests.support.scenario import replies, wait_for

MENTIONS = 45


def deliver(client: SlackClient, envelope: dict[str, Any], retry_num: int | None = None) -> int | None:
    """One delivery as Slack makes it: the HTTP status, or None where the connection failed."""
    try:
        return client.send_event(envelope, retry_num=retry_num, retry_reason="http_error").status_code
    except requests.RequestException:
        return None


def finished(message: dict[str, Any]) -> bool:
    return FEEDBACK_ACTION in str(message.get("blocks"))


def unsettled(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "data" / "ember.db") as connection:
        return int(connection.execute("SELECT count(*) FROM handled_events WHERE status = 'claimed'").fetchone()[0])


def test_a_storm_with_a_kill_midway_answers_every_mention_exactly_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    with LocalSlack(bot_token="xoxb-test", bot_user_id="UBOT", bot_id="BBOT") as slack:
        env = ember_env(
            tmp_path,
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
            EMBER_MODEL=str(tiny_model_dir),
            EMBER_MAX_NEW_TOKENS="12",
            EMBER_WORKERS="4",
            EMBER_MEMORY="false",
            EMBER_SCHEDULER="false",
            EMBER_CLAIM_HEARTBEAT="0.5",
            EMBER_STREAM_INTERVAL="0.05",  # many updates: a kill lands mid-answer
            EMBER_LOG_LEVEL="INFO",
        )
        channel = slack.add_channel("general")
        people = [slack.add_user(f"person{n}") for n in range(5)]
        envelopes = [
            slack.mention(channel, people[n % 5], f"question number {n}, what is it?") for n in range(MENTIONS)
        ]
        threads = [envelope["event"]["ts"] for envelope in envelopes]

        port = free_port()
        first = start_ember_run(tmp_path, env, port)
        client = SlackClient(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)
        # Every mention at once, and a third of them redelivered at the same moment.
        storm = [(envelope, None) for envelope in envelopes] + [(envelope, 1) for envelope in envelopes[::3]]
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(deliver, client, envelope, retry) for envelope, retry in storm]
            wait_for(
                lambda: (
                    sum(1 for t in threads if any(finished(m) for m in replies(slack, channel, t))) >= MENTIONS // 4
                ),
                timeout=120,
                what="a quarter of the mentions answered",
            )
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            statuses = [future.result() for future in futures]
        done_before = sum(1 for t in threads if any(finished(m) for m in replies(slack, channel, t)))
        half = sum(
            1
            for t in threads
            if replies(slack, channel, t) and not any(finished(m) for m in replies(slack, channel, t))
        )
        print(
            f"at the kill: {done_before}/{MENTIONS} answered, {half} half-written, "
            f"{statuses.count(None)}/{len(storm)} deliveries failed, {unsettled(tmp_path)} claims held"
        )
        assert None in statuses or any(not any(finished(m) for m in replies(slack, channel, t)) for t in threads), (
            "the kill came after everything was answered; nothing was tested"
        )

        # Slack's later retries, for every mention, reach the restarted bot.
        port = free_port()
        second = start_ember_run(tmp_path, env, port)
        try:
            client = SlackClient(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)
            with ThreadPoolExecutor(max_workers=16) as pool:
                assert set(pool.map(lambda e: deliver(client, e, 2), envelopes)) == {200}
            with ThreadPoolExecutor(max_workers=16) as pool:
                assert set(pool.map(lambda e: deliver(client, e, 3), envelopes)) == {200}
            wait_for(
                lambda: all(any(finished(m) for m in replies(slack, channel, t)) for t in threads),
                timeout=240,
                what="every mention answered",
            )
            wait_for(lambda: unsettled(tmp_path) == 0, timeout=60, what="every claim settled")
        finally:
            second.send_signal(signal.SIGTERM)
            output, _ = second.communicate(timeout=60)
        assert second.returncode == 0, output
        print(f"the restarted process took over {output.count('taking over event')} claims")

        answers = {t: replies(slack, channel, t) for t in threads}
        twice = [t for t, messages in answers.items() if len(messages) != 1]
        assert not twice, {t: [m["text"] for m in answers[t]] for t in twice}
        assert all(finished(messages[0]) for messages in answers.values())
        assert "Traceback" not in output, output
