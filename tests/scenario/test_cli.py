"""`ember` as a user runs it: a real subprocess, settings from the environment."""

from __future__ import annotations

import http.server
import signal
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.settings import Settings
from db import Database, Turn
from models import registry
from models.dataset import Example
from models.evaluation import log_likelihoods
from models.loading import ModelSource, load
from playground import LocalSlack, SlackClient
from tests.conftest import SIGNING_SECRET
from tests.support.cli import ember, ember_env, free_port, start_ember_run
from tests.support.planted import FACT, HELD, POOL, TRAINED, UNKNOWN, Feedback, add_feedback
from tests.support.scenario import answered


def stored_turns(tmp_path: Path) -> list[tuple[str, str | None, str, int]]:
    with sqlite3.connect(tmp_path / "data" / "ember.db") as connection:
        return list(connection.execute("SELECT question, thread_ts, answer, prompt_tokens FROM turns ORDER BY id"))


def test_run_without_slack_tokens_and_without_the_playground_names_what_to_set(tmp_path: Path) -> None:
    result = ember(tmp_path, "run", EMBER_PLAYGROUND="false")
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is not set: set it to your bot token" in result.stderr
    assert "SLACK_SIGNING_SECRET is not set" in result.stderr
    assert "unset it to try Ember in a local playground" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMBER_PORT", "eighty"),
        ("EMBER_PORT", "70000"),
        ("EMBER_DEVICE", "tpu"),
        ("SLACK_API_URL", "slack.com"),
        ("SLACK_APP_TOKEN", "xoxb-wrong-kind"),
        ("EMBER_MAX_NEW_TOKENS", "0"),
        ("EMBER_DATABASE_URL", "postgres//ember:s3cret@db/ember"),
        ("EMBER_DATABASE_URL", "mssql+nosuchdriver://ember:s3cret@db/ember"),
    ],
)
def test_a_malformed_setting_stops_start_up_naming_it(tmp_path: Path, name: str, value: str) -> None:
    result = ember(tmp_path, "ask", "hi", **{name: value})
    assert result.returncode == 2
    assert f"{name} is invalid" in result.stderr and "Set it to" in result.stderr
    assert "Traceback" not in result.stderr
    if name in ("SLACK_APP_TOKEN", "EMBER_DATABASE_URL"):
        assert value not in result.stderr and "s3cret" not in result.stderr, "secrets are never echoed"


def test_a_database_that_cannot_be_reached_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://ember:s3cret@/ember?host={tmp_path / 'no-server-here'}"
    result = ember(tmp_path, "ask", "hi", EMBER_DATABASE_URL=url)
    assert result.returncode == 2
    assert "EMBER_DATABASE_URL: cannot open the database at postgresql+psycopg://ember:***@/ember" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_ask_answers_and_remembers_on_postgresql(tmp_path: Path, tiny_model_dir: Path, postgres_url: str) -> None:
    env = {"EMBER_MODEL": str(tiny_model_dir), "EMBER_MAX_NEW_TOKENS": "8", "EMBER_DATABASE_URL": postgres_url}
    result = ember(tmp_path, "ask", "What is the capital of France?", **env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data" / "ember.db").exists(), "nothing was written to a SQLite file"
    database = Database(postgres_url)
    with database.session() as session:
        [turn] = session.scalars(select(Turn)).all()
        assert (turn.question, turn.answer) == ("What is the capital of France?", result.stdout.strip())
    database.close()
    assert turn.answer


def test_a_model_that_cannot_be_loaded_is_a_clear_error(tmp_path: Path) -> None:
    result = ember(tmp_path, "ask", "hi", EMBER_MODEL="acme/no-such-model")
    assert result.returncode == 2
    assert "cannot load model 'acme/no-such-model'" in result.stderr
    assert "Traceback" not in result.stderr


def test_ask_answers_through_the_qa_path_and_remembers(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = ember(
        tmp_path, "ask", "What is the capital of France?", EMBER_MODEL=str(tiny_model_dir), EMBER_MAX_NEW_TOKENS="8"
    )
    assert result.returncode == 0, result.stderr
    [(question, _thread, answer, _tokens)] = stored_turns(tmp_path)
    assert question == "What is the capital of France?"
    assert result.stdout.strip() == answer and answer


def test_chat_keeps_the_conversation_in_memory_and_can_resume_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {"EMBER_MODEL": str(tiny_model_dir), "EMBER_MAX_NEW_TOKENS": "8"}
    first = ember(tmp_path, "chat", stdin="My name is Ada.\nWhat is my name?\n", **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("ember> ") == 2
    conversation_id = first.stdout.split("ember chat --resume ")[1].split("`")[0]
    resumed = ember(tmp_path, "chat", "--resume", conversation_id, stdin="And again?\n", **env)
    assert resumed.returncode == 0, resumed.stderr
    turns = stored_turns(tmp_path)
    assert [question for question, *_ in turns] == ["My name is Ada.", "What is my name?", "And again?"]
    assert {thread for _, thread, *_ in turns} == {conversation_id}
    # Each turn's prompt carries the ones before it.
    assert turns[0][3] < turns[1][3] < turns[2][3]


def test_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    result = ember(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "database is up to date" in result.stdout
    assert (tmp_path / "data" / "ember.db").is_file()


def test_ember_run_serves_slack_and_stops_cleanly_on_sigterm(tmp_path: Path, tiny_model_dir: Path) -> None:
    port = free_port()
    with LocalSlack(bot_token="xoxb-test", bot_user_id="UBOT") as slack:
        env = ember_env(
            tmp_path,
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
            EMBER_MODEL=str(tiny_model_dir),
            EMBER_MAX_NEW_TOKENS="8",
        )
        process = start_ember_run(tmp_path, env, port)
        try:
            url = f"http://127.0.0.1:{port}"
            channel, alice = slack.add_channel("general"), slack.add_user("alice")
            envelope = slack.mention(channel, alice, "hello from a real process")
            assert SlackClient(f"{url}/slack/events", SIGNING_SECRET).send_event(envelope).status_code == 200
            [reply] = answered(slack, channel, envelope["event"]["ts"])
            assert reply["thread_ts"] == envelope["event"]["ts"]
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.slow
def test_ask_answers_from_the_packaged_model(tmp_path: Path) -> None:
    result = ember(tmp_path, "ask", "What is the capital of France?", EMBER_MAX_NEW_TOKENS="32")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_run_with_a_token_slack_rejects_stops_before_loading_the_model(tmp_path: Path) -> None:
    with LocalSlack(bot_token="xoxb-the-real-one") as slack:
        result = ember(
            tmp_path,
            "run",
            SLACK_BOT_TOKEN="xoxb-stale",
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack.api_url,
            EMBER_MODEL="/nonexistent/model",
            timeout=120,
        )
    assert result.returncode == 2
    assert "Slack rejected SLACK_BOT_TOKEN (invalid_auth)" in result.stderr
    assert "Traceback" not in result.stderr and "xoxb-stale" not in result.stderr


def test_run_with_an_app_token_slack_rejects_stops_before_loading_the_model(tmp_path: Path) -> None:
    with LocalSlack(bot_token="xoxb-test") as slack:
        result = ember(
            tmp_path,
            "run",
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_APP_TOKEN="xapp-1-A0001-1-revoked",
            SLACK_API_URL=slack.api_url,
            EMBER_MODEL="/nonexistent/model",  # reaching the model would be a different error
            timeout=120,
        )
    assert result.returncode == 2
    assert "Slack rejected SLACK_APP_TOKEN (invalid_auth)" in result.stderr
    assert "Traceback" not in result.stderr and "revoked" not in result.stderr


def test_run_with_an_unreachable_slack_api_says_so(tmp_path: Path) -> None:
    result = ember(
        tmp_path,
        "run",
        SLACK_BOT_TOKEN="xoxb-x",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/",
        timeout=120,
    )
    assert result.returncode == 2
    assert "cannot reach Slack's Web API at SLACK_API_URL=http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


class _WebPage(http.server.BaseHTTPRequestHandler):
    """A web server that is not Slack's Web API: every request gets an HTML page."""

    def do_POST(self) -> None:
        page = b"<html><body>Welcome to our intranet</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


def test_run_with_a_slack_api_url_that_is_not_slack_names_the_url_not_the_token(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with LocalSlack(bot_token="xoxb-test") as slack:
            for url in (f"http://127.0.0.1:{server.server_port}/", slack.api_url + "wrong/path/"):
                result = ember(
                    tmp_path,
                    "run",
                    SLACK_BOT_TOKEN="xoxb-test",
                    SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    SLACK_API_URL=url,
                    EMBER_MODEL="/nonexistent/model",
                    timeout=120,
                )
                assert result.returncode == 2, result.stderr
                assert f"SLACK_API_URL={url} does not answer like Slack's Web API" in result.stderr
                assert "SLACK_BOT_TOKEN" not in result.stderr and "Traceback" not in result.stderr
    finally:
        server.shutdown()


def test_the_openai_backend_needs_its_url(tmp_path: Path) -> None:
    result = ember(tmp_path, "ask", "hi", EMBER_LLM_BACKEND="openai")
    assert result.returncode == 2
    assert "EMBER_LLM_BACKEND=openai needs EMBER_LLM_URL" in result.stderr


def test_models_and_train_commands_on_a_fresh_install(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {"EMBER_MODEL": str(tiny_model_dir)}
    listed = ember(tmp_path, "models", "list", **env)
    assert listed.returncode == 0, listed.stderr
    assert "tiny-llama" in listed.stdout and "active" in listed.stdout

    nothing_before = ember(tmp_path, "models", "rollback", **env)
    assert nothing_before.returncode == 2 and "Traceback" not in nothing_before.stderr
    assert nothing_before.stderr.startswith("ember: ")

    unknown = ember(tmp_path, "models", "promote", "no-such-version", **env)
    assert unknown.returncode == 2 and "no-such-version" in unknown.stderr

    trained = ember(tmp_path, "train", **env)
    assert trained.returncode == 0, trained.stderr
    assert "skipped" in trained.stdout.splitlines()[-1]
    with sqlite3.connect(tmp_path / "data" / "ember.db") as connection:
        assert connection.execute("SELECT status FROM training_runs").fetchall() == [("skipped",)]


def test_one_planted_correction_teaches_a_wording_nobody_used_through_ember_train(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """One question corrected once; after `ember train`, the right answer is likelier for a paraphrase
    that appears nowhere in the feedback (a second correction is the gate's held-out slice)."""
    env = {"EMBER_MODEL": str(tiny_model_dir), "EMBER_TRAIN_MIN_EXAMPLES": "2"}
    assert ember(tmp_path, "db", "upgrade", **env).returncode == 0
    database = Database(f"sqlite:///{tmp_path / 'data' / 'ember.db'}")
    try:
        # A "No, ..." reply in each thread, as a correction is kept with EMBER_MEMORY on or off.
        add_feedback(database, [Feedback(q, UNKNOWN, votes=(), correction=FACT) for q in (TRAINED[0], HELD[0])])
    finally:
        database.close()
    system_prompt = Settings.model_fields["system_prompt"].default
    unseen = Example("Which server builds our code?", FACT, True, "correction", system_prompt)
    assert unseen.question not in POOL

    before = likelihood(str(tiny_model_dir), unseen)
    trained = ember(tmp_path, "train", "--epochs", "8", "--learning-rate", "0.01", "--anchors", "4", **env)

    assert trained.returncode == 0, trained.stderr
    assert " promoted " in trained.stdout.splitlines()[-1], trained.stdout
    listed = ember(tmp_path, "models", "list", **env).stdout.splitlines()
    assert "held-out liked answers and corrections:" in listed[1] and "likelier" in listed[1]
    database = Database(f"sqlite:///{tmp_path / 'data' / 'ember.db'}")
    try:
        with database.session() as session:
            active = registry.active(session)
    finally:
        database.close()
    assert active is not None and active.version == "tiny-llama-ft1"
    assert likelihood(active.path, unseen) > before


def likelihood(location: str, example: Example) -> float:
    model, tokenizer, _ = load(ModelSource(location, location), "cpu")
    [score] = log_likelihoods(model, tokenizer, [example])
    return score
