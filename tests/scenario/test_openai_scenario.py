"""Ember with EMBER_LLM_BACKEND=openai: the whole bot talking to an OpenAI-compatible server.

The server is the tests' own (tests/support/openai_server.py) around a real tiny model, standing in for vLLM.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import Settings
from db.repo import Conversation
from handlers.qa.types import Question
from models import loading
from models.engine import Engine
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.cli import ember_env
from tests.support.openai_server import OpenAIServer, serve_openai
from tests.support.scenario import answered, turns


@pytest.fixture()
def server(tiny_model_dir: Path) -> Iterator[tuple[OpenAIServer, Engine]]:
    engine = Engine.load(loading.ModelSource(str(tiny_model_dir), "tiny-llama"), device="cpu")
    server = serve_openai(engine)
    yield server, engine
    server.stop()
    engine.close()


def test_a_mention_is_answered_through_an_openai_compatible_server_and_swaps_map_to_lora_loading(
    server: tuple[OpenAIServer, Engine], bot_settings: Settings, slack: LocalSlack, tiny_model_dir: Path
) -> None:
    api, backing = server
    bots = Bots(
        bot_settings.model_copy(update={"llm_backend": "openai", "llm_url": api.url, "llm_model": "tiny-llama"})
    )
    try:
        bot = bots.start()
        channel, alice = slack.add_channel("general"), slack.add_user("alice")
        first = slack.mention(channel, alice, "What is a VPN?")
        assert bots.client.send_event(first).status_code == 200
        [reply] = answered(slack, channel, first["event"]["ts"])
        [turn] = turns(bot_settings.data_dir, at_least=1)
        assert turn["model_version"] == "tiny-llama" and turn["answer"] == reply["text"]
        # The answer is the backing model's own greedy answer to the same conversation.
        fresh = Question(Conversation("T0001", channel, "channel", "elsewhere"), alice, "What is a VPN?", "mention")
        messages = bot.services.qa.build_messages(fresh)
        assert backing.generate(messages, max_new_tokens=bot_settings.max_new_tokens).text == turn["answer"]

        bot.swap_model(str(tiny_model_dir), version="tiny-v2")
        assert backing.version == "tiny-v2", "the server loaded the new weights"
        second = slack.mention(channel, alice, "And now?")
        bots.client.send_event(second)
        answered(slack, channel, second["event"]["ts"])
        assert turns(bot_settings.data_dir, at_least=2)[1]["model_version"] == "tiny-v2"
    finally:
        bots.stop()


def test_ember_ask_through_the_openai_backend(server: tuple[OpenAIServer, Engine], tmp_path: Path) -> None:
    api, _ = server
    env = ember_env(
        tmp_path,
        EMBER_LLM_BACKEND="openai",
        EMBER_LLM_URL=api.url,
        EMBER_LLM_MODEL="tiny-llama",
        EMBER_MAX_NEW_TOKENS="8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "ask", "hello?"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [turn] = turns(tmp_path / "data", at_least=1)
    assert result.stdout.strip() == turn["answer"] and turn["model_version"] == "tiny-llama"
