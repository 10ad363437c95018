"""Two `ember run` replicas on one PostgreSQL database, the scheduler on in one of them only: Slack's
deliveries of each mention land on both (a first delivery on one, its retry on the other, at the same
moment), and every mention is answered exactly once.
"""

from __future__ import annotations

import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select, text

from db import Database, HandledEvent
from playground import LocalSlack, SlackClient
from tests.conftest import SIGNING_SECRET
from tests.scenario.test_crash import deliver, finished
from tests.support.cli import ember_env, free_port, start_ember_run
from tests.support.scenario import replies, wait_for

MENTIONS = 24


def test_two_replicas_on_one_postgresql_database_answer_every_mention_once(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str
) -> None:
    database = Database(postgres_url)

    def unsettled() -> int:
        with database.session() as session:
            claimed = select(func.count()).where(HandledEvent.status != "done")
            return int(session.scalar(claimed.select_from(HandledEvent)) or 0)

    with LocalSlack(bot_token="xoxb-test", bot_user_id="UBOT", bot_id="BBOT") as slack:
        channel = slack.add_channel("general")
        people = [slack.add_user(f"person{n}") for n in range(4)]
        envelopes = [slack.mention(channel, people[n % 4], f"question {n}, what is it?") for n in range(MENTIONS)]
        threads = [envelope["event"]["ts"] for envelope in envelopes]

        def replica(name: str, scheduler: bool) -> tuple[subprocess.Popen[str], SlackClient]:
            home = tmp_path / name
            home.mkdir()
            env = ember_env(
                home,
                SLACK_BOT_TOKEN="xoxb-test",
                SLACK_SIGNING_SECRET=SIGNING_SECRET,
                SLACK_API_URL=slack.api_url,
                EMBER_DATABASE_URL=postgres_url,
                EMBER_MODEL=str(tiny_model_dir),
                EMBER_MAX_NEW_TOKENS="8",
                EMBER_WORKERS="4",
                EMBER_MEMORY="false",
                EMBER_SCHEDULER="true" if scheduler else "false",
                EMBER_CLAIM_HEARTBEAT="0.5",
                EMBER_LOG_LEVEL="INFO",
            )
            port = free_port()
            process = start_ember_run(home, env, port)
            return process, SlackClient(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)

        # Both start at once on the new database: one migrates it, the other waits and finds it done.
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = list(pool.map(lambda args: replica(*args), [("scheduling", True), ("replica", False)]))
        (first, to_first), (second, to_second) = started
        try:
            clients = [to_first, to_second]
            # Each mention on one replica, and Slack's retry of it on the other, all at the same moment.
            storm = [(clients[n % 2], envelope, None) for n, envelope in enumerate(envelopes)]
            storm += [(clients[(n + 1) % 2], envelope, 1) for n, envelope in enumerate(envelopes)]
            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(lambda job: deliver(*job), storm))
            assert set(statuses) == {200}
            wait_for(
                lambda: all(any(finished(m) for m in replies(slack, channel, t)) for t in threads),
                timeout=240,
                what="every mention answered",
            )
            wait_for(lambda: unsettled() == 0, timeout=60, what="every claim settled")
        finally:
            outputs = []
            for process in (first, second):
                process.send_signal(signal.SIGTERM)
                outputs.append(process.communicate(timeout=60)[0])
        assert (first.returncode, second.returncode) == (0, 0), outputs
        assert not any("Traceback" in output for output in outputs), outputs

        answers = {t: replies(slack, channel, t) for t in threads}
        twice = [t for t, messages in answers.items() if len(messages) != 1]
        assert not twice, {t: [m["text"] for m in answers[t]] for t in twice}
        assert all(finished(messages[0]) for messages in answers.values())

    with database.session() as session:
        owners = set(session.scalars(select(HandledEvent.owner)))
        jobs = set(session.scalars(text("SELECT id FROM apscheduler_jobs")))
    database.close()
    # Owners are named host:pid:nonce: both replicas answered some of the mentions.
    assert {owner.split(":")[1] for owner in owners if owner} == {str(first.pid), str(second.pid)}
    assert "nightly-training" in jobs, "the scheduling replica keeps its jobs in the shared database"
