"""How fast Slack gets its ack while the model is busy: Ember beside a bot that answers before acking.

    python -m bench.ack [--requests 60] [--concurrency 6]

Slack retries any event not acknowledged within 3 s. Both bots run the same tiny model behind real
HTTP against a local Slack-compatible server; mentions arrive in bursts while earlier ones are still
being answered. The baseline is the common mistake: a Bolt listener that generates, then acks
(`process_before_response=True`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from slack_bolt import App

from bot.runtime import Ember
from bot.server import EmberWSGI, HttpServer
from bot.settings import load_settings
from models import loading
from models.engine import Engine
from playground import LocalSlack, SlackClient
from tests.support.models import build_tiny_model, packaged_tokenizer

SECRET = "bench-signing-secret"
SLACK_DEADLINE = 3.0


def burst(client: SlackClient, slack: LocalSlack, channel: str, user: str, count: int, workers: int) -> list[float]:
    envelopes = [slack.mention(channel, user, f"question {i}: what is the deploy status?") for i in range(count)]

    def send(envelope: dict[str, Any]) -> float:
        started = time.perf_counter()
        assert client.send_event(envelope).status_code == 200
        return time.perf_counter() - started

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(send, envelopes))


def naive_bot(slack: LocalSlack, engine: Engine) -> HttpServer:
    from slack_sdk import WebClient

    app = App(
        client=WebClient(token="xoxb-bench", base_url=slack.api_url),
        signing_secret=SECRET,
        process_before_response=True,
    )

    @app.event("app_mention")
    def answer_then_ack(event: dict[str, Any], say: Any) -> None:
        reply = engine.generate([{"role": "user", "content": event["text"]}], max_new_tokens=32)
        say(text=reply.text or "…", thread_ts=event["ts"])

    server = HttpServer(EmberWSGI(app, SECRET, health=dict, metrics=bytes), host="127.0.0.1", port=0)
    server.start()
    return server


def row(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[int(0.95 * (len(ordered) - 1))] * 1000
    late = sum(t > SLACK_DEADLINE for t in ordered)
    return f"{name:<28} {p50:9.1f} {p95:9.1f} {max(ordered) * 1000:9.1f} {late:>6}/{len(ordered)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--model", default="default", help="'default' (packaged SmolLM2-135M) or 'tiny'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, LocalSlack(bot_token="xoxb-bench") as slack:
        if args.model == "tiny":
            model_dir = build_tiny_model(Path(scratch) / "tiny", packaged_tokenizer(), context=2048)
        else:
            model_dir = loading.convert_packaged(Path(scratch) / "data")
        channel, user = slack.add_channel("general"), slack.add_user("alice")
        settings = load_settings(
            slack_bot_token="xoxb-bench",
            slack_signing_secret=SECRET,
            slack_api_url=slack.api_url,
            port=0,
            data_dir=Path(scratch) / "data",
            model=str(model_dir),
            device="cpu",
            max_new_tokens=32,
        )
        ember = Ember.build(settings)
        ember.start()
        ember_acks = burst(
            SlackClient(f"{ember.url}/slack/events", SECRET, timeout=300),
            slack,
            channel,
            user,
            args.requests,
            args.concurrency,
        )
        ember.stop()

        engine = Engine.load(loading.ModelSource(str(model_dir), "tiny"), device="cpu")
        naive = naive_bot(slack, engine)
        naive_acks = burst(
            SlackClient(f"http://127.0.0.1:{naive.port}/slack/events", SECRET, timeout=300),
            slack,
            channel,
            user,
            args.requests,
            args.concurrency,
        )
        naive.stop()
        engine.close()
    print(
        f"machine: {os.cpu_count()} cores; model {model_dir.name}, 32 new tokens an answer; "
        f"{args.requests} mentions, {args.concurrency} at a time"
    )
    print(f"{'bot':<28} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'> 3 s':>8}")
    print(row("ember (ack, then answer)", ember_acks))
    print(row("baseline (answer, then ack)", naive_acks))


if __name__ == "__main__":
    main()
