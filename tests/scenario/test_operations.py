"""What an operator watches: /healthz, /metrics, and how Ember behaves when it is busy."""

from __future__ import annotations

import requests

from playground import LocalSlack
from tests.conftest import Bots
from tests.support.scenario import answered


def test_healthz_reports_the_model_version_and_queue_depth(bots: Bots) -> None:
    bot = bots.start()
    health = requests.get(f"{bot.url}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_version": "tiny-llama", "queue_depth": 0}
    waiting = bot.engine.stream([{"role": "user", "content": "hold on"}], max_new_tokens=4)
    assert requests.get(f"{bot.url}/healthz", timeout=10).json()["queue_depth"] == 1
    list(waiting)
    assert requests.get(f"{bot.url}/healthz", timeout=10).json()["queue_depth"] == 0


def test_metrics_count_answers_tokens_latency_and_swaps(bots: Bots, slack: LocalSlack, tiny_model_dir) -> None:
    bot = bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "count me")
    bots.client.send_event(envelope)
    answered(slack, channel, envelope["event"]["ts"])
    bot.swap_model(str(tiny_model_dir), version="tiny-again")

    text = requests.get(f"{bot.url}/metrics", timeout=10).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    finished = sum(v for k, v in samples.items() if k.startswith("ember_requests_total"))
    assert finished == 1
    assert samples["ember_generated_tokens_total"] > 0
    assert samples["ember_request_latency_seconds_count"] == 1
    assert samples["ember_time_to_first_token_seconds_count"] == 1
    assert samples["ember_queue_depth"] == 0
    assert samples['ember_model_swaps_total{outcome="ok"}'] == 1
    assert samples['ember_model_info{version="tiny-again"}'] == 1
    assert samples["ember_tokens_per_second"] > 0


def test_over_the_queue_depth_an_asker_hears_at_once_that_they_wait(bots: Bots, slack: LocalSlack) -> None:
    bot = bots.start(max_queue=1)
    # A question already in the model's queue (it stays there until its reader finishes it).
    ahead = bot.engine.stream([{"role": "user", "content": "first in line"}], max_new_tokens=4)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope = slack.mention(channel, alice, "am I queued?")
    bots.client.send_event(envelope)
    [notice] = slack.wait_for("chat.postEphemeral")
    assert notice.args["user"] == alice and notice.args["thread_ts"] == envelope["event"]["ts"]
    assert "your question is queued (position 2)" in notice.args["text"]
    answered(slack, channel, envelope["event"]["ts"])
    list(ahead)

    command = bots.client.send_form(slack.command_payload(channel, alice, "ask and me?"))
    assert command.json()["text"].startswith("Thinking about"), "nobody is ahead any more"
