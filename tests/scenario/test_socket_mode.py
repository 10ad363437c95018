"""Socket Mode (SLACK_APP_TOKEN set): Slack's events come over a WebSocket Ember opens, not over HTTP.

The stand-in's Socket Mode endpoint is checked first with slack_sdk's own client, then Ember runs
through it end to end: real Bolt, the real SocketModeHandler, real sockets, a tiny real model.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.runtime import Ember
from bot.settings import SettingsError
from handlers.slack.feedback import (
    CORRECTION_BLOCK,
    CORRECTION_INPUT,
    FEEDBACK_ACTION,
    SuggestTarget,
    suggest_modal,
)
from models.engine import Engine
from playground import LocalSlack
from tests.conftest import Bots
from tests.support import scenario
from tests.support.feedback import click, thanks, votes
from tests.support.relay import Relay
from tests.support.scenario import answered, replies, wait_for

APP_TOKEN = "xapp-1-A0001-1-playground"
# Ember pings every SOCKET_PING_SECONDS and drops a connection after four unanswered: about 10 s,
# with room for a loaded machine.
SILENT_NOTICED_WITHIN = 20.0


# --- the stand-in's Socket Mode endpoint, driven by slack_sdk's client ---------------------------


@pytest.fixture()
def web(slack: LocalSlack) -> WebClient:
    return WebClient(token=slack.bot_token, base_url=slack.api_url)


@pytest.fixture()
def client(slack: LocalSlack, web: WebClient) -> Iterator[tuple[SocketModeClient, list[dict[str, Any]]]]:
    """slack_sdk's built-in Socket Mode client (Bolt's default), acking every request; yields what it got."""
    received: list[dict[str, Any]] = []
    sm = SocketModeClient(app_token=slack.app_token, web_client=web)

    def on_message(_: Any, message: dict[str, Any], raw: str | None) -> None:
        received.append(message)

    def on_request(c: Any, request: SocketModeRequest) -> None:
        payload = {"text": "seen"} if request.accepts_response_payload else None
        c.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=payload))

    sm.message_listeners.append(on_message)
    sm.socket_mode_request_listeners.append(on_request)
    sm.connect()
    yield sm, received
    sm.close()


def test_apps_connections_open_takes_only_the_app_level_token(slack: LocalSlack, web: WebClient) -> None:
    url = web.apps_connections_open(app_token=slack.app_token)["url"]
    assert url.startswith(f"ws://127.0.0.1:{slack.socket_mode.port}/link/?ticket=")
    for token, error in (("xoxb-test", "not_allowed_token_type"), ("xapp-1-A0001-1-wrong", "invalid_auth")):
        with pytest.raises(SlackApiError) as info:
            web.apps_connections_open(app_token=token)
        assert info.value.response["error"] == error
    # An app-level token opens connections and nothing else.
    app_web = WebClient(token=slack.app_token, base_url=slack.api_url)
    with pytest.raises(SlackApiError) as info:
        app_web.chat_postMessage(channel=slack.add_channel("general"), text="hi")
    assert info.value.response["error"] == "not_allowed_token_type"
    assert [call.response["error"] for call in slack.calls if not call.ok] == [
        "not_allowed_token_type",
        "invalid_auth",
        "not_allowed_token_type",
    ]


def test_the_client_gets_hello_and_every_kind_of_envelope_and_its_acks_are_recorded(
    slack: LocalSlack, client: tuple[SocketModeClient, list[dict[str, Any]]]
) -> None:
    sm, received = client
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    wait_for(lambda: any(m.get("type") == "hello" for m in received), timeout=10, what="hello")
    [hello] = [m for m in received if m.get("type") == "hello"]
    assert hello["connection_info"] == {"app_id": "A0001"} and hello["num_connections"] == 1

    body = slack.mention(channel, alice, "What is the VPN host?")
    event_id = slack.socket_mode.send_event(body)
    command_id = slack.socket_mode.send_command(slack.command_payload(channel, alice, "help"))
    message_ts = body["event"]["ts"]
    action_id = slack.socket_mode.send_interaction(slack.block_action(channel, alice, message_ts, "noop", "1"))

    assert slack.socket_mode.wait_for_ack(event_id).payload is None
    assert slack.socket_mode.wait_for_ack(command_id).payload == {"text": "seen"}
    assert slack.socket_mode.wait_for_ack(action_id).payload is None
    by_id = {m.get("envelope_id"): m for m in received}
    assert by_id[event_id]["payload"] == body
    assert (by_id[event_id]["retry_attempt"], by_id[event_id]["accepts_response_payload"]) == (0, False)
    assert by_id[command_id]["type"] == "slash_commands" and by_id[command_id]["payload"]["text"] == "help"
    assert by_id[action_id]["type"] == "interactive" and by_id[action_id]["payload"]["type"] == "block_actions"
    # The client pings right after connecting; the pong echoes its payload, which is how it knows the link is alive.
    wait_for(lambda: sm.current_session is not None and sm.current_session.last_ping_pong_time is not None, 10, "pong")


def test_a_disconnect_request_makes_the_client_reconnect_on_a_fresh_url(
    slack: LocalSlack, client: tuple[SocketModeClient, list[dict[str, Any]]]
) -> None:
    slack.socket_mode.wait_for_connects(1)
    slack.socket_mode.disconnect()
    slack.socket_mode.wait_for_connects(2)
    wait_for(lambda: slack.socket_mode.open_connections == 1, timeout=10, what="the old connection to close")
    assert len(slack.calls_to("apps.connections.open")) == 2
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    envelope_id = slack.socket_mode.send_event(slack.mention(channel, alice, "still there?"))
    slack.socket_mode.wait_for_ack(envelope_id)


def test_a_url_is_good_for_one_connection_and_a_bad_handshake_is_refused(slack: LocalSlack, web: WebClient) -> None:
    url = web.apps_connections_open(app_token=slack.app_token)["url"]
    target = url.removeprefix(f"ws://127.0.0.1:{slack.socket_mode.port}")
    upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    # RFC 6455's own example key and the accept value it must produce.
    first = _handshake(slack, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{upgrade}{key}\r\n")
    assert first.startswith("HTTP/1.1 101") and "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in first
    assert _handshake(slack, f"GET {target} HTTP/1.1\r\n{upgrade}{key}\r\n").startswith("HTTP/1.1 401")
    fresh = web.apps_connections_open(app_token=slack.app_token)["url"].split(str(slack.socket_mode.port), 1)[1]
    assert _handshake(slack, f"GET {fresh} HTTP/1.1\r\n{upgrade}\r\n").startswith("HTTP/1.1 400"), "no key"


def _handshake(slack: LocalSlack, request: str) -> str:
    """Send an opening handshake; return the status line and headers (and the hello, if upgraded)."""
    with socket.create_connection(("127.0.0.1", slack.socket_mode.port), timeout=5) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")


# --- Ember in Socket Mode -----------------------------------------------------------------------


def start_socket_mode(bots: Bots) -> Ember:
    """Ember as a Socket Mode install runs it: an app-level token and no signing secret."""
    return bots.start(slack_app_token=SecretStr(APP_TOKEN), slack_signing_secret=None)


def mention(slack: LocalSlack, channel: str, user: str, text: str) -> tuple[dict[str, Any], str]:
    """Mention Ember over the socket; return the event body and the envelope id."""
    body = slack.mention(channel, user, text)
    return body, slack.socket_mode.send_event(body)


def test_a_mention_over_the_socket_is_acked_at_once_and_answered_once_in_its_thread(
    bots: Bots, slack: LocalSlack
) -> None:
    bot = start_socket_mode(bots)
    assert bot.socket_handler is not None
    slack.socket_mode.wait_for_connects(1)
    # Once to check the token before the model loads, once to connect; only the second URL is used.
    assert [call.token for call in slack.calls_to("apps.connections.open")] == [APP_TOKEN, APP_TOKEN]
    assert slack.socket_mode.connects == 1
    channel, alice = slack.add_channel("general"), slack.add_user("alice")

    # Hold the model: Slack wants the ack within 3 s, so it must not wait for generation.
    assert isinstance(bot.engine, Engine)
    with bot.engine._lock:
        body, envelope_id = mention(slack, channel, alice, "What is the VPN host?")
        slack.socket_mode.wait_for_ack(envelope_id)
        assert not replies(slack, channel), "nothing can be answered while the model is held"

    thread_ts = body["event"]["ts"]
    [reply] = answered(slack, channel, thread_ts)
    [turn] = scenario.turns(bot.settings.data_dir, at_least=1)
    assert reply["text"] == turn["answer"]
    assert (turn["question"], turn["answer_ts"]) == ("What is the VPN host?", reply["ts"])

    # Slack redelivers an envelope it thinks was not acked in time: same event, retry_attempt 1.
    retry_id = slack.socket_mode.send_event(body, retry_attempt=1, retry_reason="timeout")
    slack.socket_mode.wait_for_ack(retry_id)
    # With one answer worker, once a later question is answered the redelivery has been handled.
    barrier, barrier_id = mention(slack, channel, alice, "barrier question")
    slack.socket_mode.wait_for_ack(barrier_id)
    answered(slack, channel, barrier["event"]["ts"])
    assert len(replies(slack, channel, thread_ts)) == 1, "the redelivered mention was not answered again"
    assert len(scenario.turns(bot.settings.data_dir)) == 2


def test_http_serves_health_but_not_slack_events_in_socket_mode(bots: Bots, slack: LocalSlack) -> None:
    bot = start_socket_mode(bots)
    health = requests.get(f"{bot.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert requests.get(f"{bot.url}/metrics", timeout=10).status_code == 200
    # No signing secret to check requests against, so the HTTP events endpoint is not served at all.
    forged = slack.mention(slack.add_channel("general"), slack.add_user("mallory"), "unsigned")
    assert requests.post(f"{bot.url}/slack/events", json=forged, timeout=10).status_code == 404


def test_ember_commands_over_the_socket_answer_in_the_ack_and_in_the_channel(bots: Bots, slack: LocalSlack) -> None:
    start_socket_mode(bots)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    help_id = slack.socket_mode.send_command(slack.command_payload(channel, alice, "help"))
    shown = slack.socket_mode.wait_for_ack(help_id).payload
    assert shown is not None and shown["response_type"] == "ephemeral"
    assert "/ember ask <question>" in shown["text"] and "/ember help" in shown["text"]

    ask_id = slack.socket_mode.send_command(slack.command_payload(channel, alice, "ask How do I reset my password?"))
    thinking = slack.socket_mode.wait_for_ack(ask_id).payload
    assert thinking is not None and "Thinking about: _How do I reset my password?_" in thinking["text"]
    [post] = slack.wait_for("chat.postMessage", lambda call: call.args.get("channel") == channel, timeout=60)
    assert post.args["text"].startswith(f"<@{alice}> asked: _How do I reset my password?_")


def test_a_thumbs_up_over_the_socket_is_acked_and_stored(bots: Bots, slack: LocalSlack) -> None:
    bot = start_socket_mode(bots)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    body, _ = mention(slack, channel, alice, "Where is the style guide?")
    [reply] = answered(slack, channel, body["event"]["ts"])
    [turn] = scenario.turns(bot.settings.data_dir, at_least=1)

    click_id = slack.socket_mode.send_interaction(click(slack, channel, alice, reply["ts"], FEEDBACK_ACTION))
    slack.socket_mode.wait_for_ack(click_id)
    thanks(slack, alice, 1)
    assert votes(bot, turn["id"]) == [(alice, 1, "button", None)]


def test_ember_reconnects_when_slack_recycles_the_connection(bots: Bots, slack: LocalSlack) -> None:
    start_socket_mode(bots)
    slack.socket_mode.wait_for_connects(1)
    slack.socket_mode.disconnect("refresh_requested")
    slack.socket_mode.wait_for_connects(2)
    # The start-up check, the first connection, and a fresh URL for the new one.
    assert len(slack.calls_to("apps.connections.open")) == 3, "a fresh URL for the new connection"
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    body, envelope_id = mention(slack, channel, alice, "Are you still there?")
    slack.socket_mode.wait_for_ack(envelope_id)
    answered(slack, channel, body["event"]["ts"])


def test_ember_notices_a_connection_gone_silent_within_about_ten_seconds_and_reconnects(
    bots: Bots, slack: LocalSlack
) -> None:
    relay = Relay(slack.socket_mode.port)
    slack.socket_mode.url_port = relay.port
    try:
        start_socket_mode(bots)
        slack.socket_mode.wait_for_connects(1)
        # The server dies without a word (or the network between breaks): no close, no reset. The
        # next URL Slack hands out points straight at a live server.
        slack.socket_mode.url_port = None
        went_silent = time.monotonic()
        relay.go_silent()
        # slack_sdk's default (a ping every 5 s, stale after 20 s without a pong) would miss this.
        slack.socket_mode.wait_for_connects(2, timeout=SILENT_NOTICED_WITHIN)
        print(f"reconnected {time.monotonic() - went_silent:.1f} s after the connection went silent")
    finally:
        relay.close()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    body, envelope_id = mention(slack, channel, alice, "Are you still there?")
    slack.socket_mode.wait_for_ack(envelope_id)
    answered(slack, channel, body["event"]["ts"])


def test_malformed_envelopes_over_the_socket_are_acked_and_logged_and_ember_still_answers(
    bots: Bots, slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    start_socket_mode(bots)
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    good = slack.mention(channel, alice, "What is the VPN host?")
    # A modal with two conversation pickers that each ask for a response_url.
    modal = {**suggest_modal(SuggestTarget(channel, "1.2", "1.1"), question="What is the VPN host?"), "id": "V1"}
    values = {CORRECTION_BLOCK: {CORRECTION_INPUT: {"type": "plain_text_input", "value": "vpn.acme.internal"}}}
    submission = slack.events.view_submission(alice, modal, values)
    submission["response_urls"] = [{"response_url": f"{slack.api_url}/r/1"}, {"response_url": f"{slack.api_url}/r/2"}]
    with caplog.at_level(logging.WARNING):
        sent = [
            slack.socket_mode.send_event({**good, "event": None}),
            slack.socket_mode.send_event({**good, "event": {**good["event"], "user": 42}}),
            slack.socket_mode.send_event({**good, "event": {"type": "something_new_from_slack"}}),
            slack.socket_mode.send_interaction({"type": "block_actions", "user": 7, "actions": []}),
            slack.socket_mode.send_interaction(submission),
        ]
        # Each is acknowledged, so Slack does not send it again.
        for envelope_id in sent:
            slack.socket_mode.wait_for_ack(envelope_id)
        body, envelope_id = mention(slack, channel, alice, "Are you still there?")
        answered(slack, channel, body["event"]["ts"])
    refusals = [r.getMessage() for r in caplog.records if r.name == "bot.socket_mode"]
    assert refusals == [
        "refused an envelope from Slack's socket: event must be an object",
        "refused an envelope from Slack's socket: event.user must be a string, not a number",
        "refused an envelope from Slack's socket: user must be an object, not a number",
    ]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert not replies(slack, channel, good["event"]["ts"]), "nothing malformed was answered"


def test_a_wrong_app_token_stops_start_up_with_a_message_naming_slack_app_token(bots: Bots, slack: LocalSlack) -> None:
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN"):
        bots.start(slack_app_token=SecretStr("xapp-1-A0001-1-revoked"), slack_signing_secret=None)
