"""Tests of the Slack stand-in, driven through the real slack_sdk clients."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from playground import LocalSlack, SlackClient, sign

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"
TS_FORMAT = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack(bot_token=TOKEN, team_id="T0001", bot_user_id="UBOT", bot_id="BBOT") as fake:
        yield fake
        assert fake.server_errors == []


@pytest.fixture
def web(slack: LocalSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=slack.api_url)


@pytest.fixture
def ch(slack: LocalSlack) -> str:
    return slack.add_channel("general", kind="public")


@pytest.fixture
def alice(slack: LocalSlack) -> str:
    return slack.add_user("alice")


def slack_error(call: Any) -> SlackApiError:
    """Run a WebClient call that must fail and return the error."""
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


# -- signing ------------------------------------------------------------


def test_sign_matches_slacks_published_test_vector() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == expected


# -- Web API through slack_sdk -------------------------------------------


def test_urls_and_auth_test(slack: LocalSlack, web: WebClient) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", slack.base_url)
    assert slack.api_url == slack.base_url + "/api/"
    data = web.auth_test().data
    assert isinstance(data, dict)
    assert data["ok"] is True
    assert (data["team_id"], data["user_id"], data["bot_id"]) == ("T0001", "UBOT", "BBOT")
    assert data["url"] == slack.base_url + "/"


def test_post_message_is_stored_as_the_bots_and_recorded(slack: LocalSlack, web: WebClient, ch: str) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    before = time.monotonic()
    resp = web.chat_postMessage(channel=ch, text="hi", blocks=blocks)

    assert resp["ok"] and resp["channel"] == ch and TS_FORMAT.match(resp["ts"])
    assert resp["message"]["bot_id"] == "BBOT" and resp["message"]["user"] == "UBOT"
    [stored] = slack.messages(ch)
    assert stored["ts"] == resp["ts"] and stored["text"] == "hi" and stored["blocks"] == blocks
    [call] = slack.calls_to("chat.postMessage")
    assert call.token == TOKEN and call.args == {"channel": ch, "text": "hi", "blocks": blocks}
    assert before <= call.at <= time.monotonic() and call.ok and call.status == 200


def test_timestamps_strictly_increase(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    for i in range(5):
        web.chat_postMessage(channel=ch, text=f"bot {i}")
        slack.user_message(ch, alice, f"human {i}")
    stamps = [m["ts"] for m in slack.messages(ch)]
    assert all(TS_FORMAT.match(ts) for ts in stamps)
    assert [Decimal(ts) for ts in stamps] == sorted({Decimal(ts) for ts in stamps})
    assert len(stamps) == 10


def test_thread_replies_come_back_parent_first(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    parent_ts = slack.mention(ch, alice, "question?")["event"]["ts"]
    first = web.chat_postMessage(channel=ch, text="answer 1", thread_ts=parent_ts)
    # A reply addressed to a reply lands in the parent's thread, as on Slack.
    web.chat_postMessage(channel=ch, text="answer 2", thread_ts=first["ts"])

    replies = web.conversations_replies(channel=ch, ts=parent_ts)
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["<@UBOT> question?", "answer 1", "answer 2"]
    assert replies["has_more"] is False
    parent = replies["messages"][0]
    assert parent["reply_count"] == 2 and parent["reply_users"] == ["UBOT"] and parent["thread_ts"] == parent_ts
    assert all(m["thread_ts"] == parent_ts for m in replies["messages"][1:])
    assert [m["text"] for m in slack.messages(ch, thread_ts=parent_ts)] == texts
    assert slack_error(lambda: web.conversations_replies(channel=ch, ts="1.000001")).response["error"] == (
        "thread_not_found"
    )


def test_history_is_newest_first_without_replies_and_paginates(
    slack: LocalSlack, web: WebClient, ch: str, alice: str
) -> None:
    stamps = [slack.user_message(ch, alice, f"m{i}")["event"]["ts"] for i in range(3)]
    slack.user_message(ch, alice, "in thread", thread_ts=stamps[0])

    history = web.conversations_history(channel=ch)
    assert [m["text"] for m in history["messages"]] == ["m2", "m1", "m0"]

    page = web.conversations_history(channel=ch, limit=2)
    assert [m["text"] for m in page["messages"]] == ["m2", "m1"] and page["has_more"] is True
    rest = web.conversations_history(channel=ch, limit=2, cursor=page["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["m0"] and rest["has_more"] is False

    window = web.conversations_history(channel=ch, oldest=stamps[0], latest=stamps[2])
    assert [m["text"] for m in window["messages"]] == ["m1"]


def test_update_changes_only_the_bots_own_messages(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    ts = web.chat_postMessage(channel=ch, text="draft")["ts"]
    updated = web.chat_update(channel=ch, ts=ts, text="final")
    assert updated["ts"] == ts and updated["text"] == "final"
    stored = slack.message(ch, ts)
    assert stored is not None and stored["text"] == "final" and stored["edited"]["user"] == "UBOT"

    assert slack_error(lambda: web.chat_update(channel=ch, ts="1.000001", text="x")).response["error"] == (
        "message_not_found"
    )
    human_ts = slack.user_message(ch, alice, "mine")["event"]["ts"]
    err = slack_error(lambda: web.chat_update(channel=ch, ts=human_ts, text="x"))
    assert err.response["error"] == "cant_update_message"


def test_delete_ephemeral_and_permalink(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    ts = web.chat_postMessage(channel=ch, text="gone soon")["ts"]
    link = web.chat_getPermalink(channel=ch, message_ts=ts)["permalink"]
    assert link == f"{slack.base_url}/archives/{ch}/p{ts.replace('.', '')}"
    web.chat_delete(channel=ch, ts=ts)
    assert slack.messages(ch) == []

    eph = web.chat_postEphemeral(channel=ch, user=alice, text="only you")
    assert TS_FORMAT.match(eph["message_ts"])
    assert slack.messages(ch) == []
    [shown] = slack.ephemerals(ch)
    assert (shown["user"], shown["text"], shown["via"]) == (alice, "only you", "chat.postEphemeral")


def test_info_reactions_and_assistant_calls(slack: LocalSlack, web: WebClient, alice: str) -> None:
    private = slack.add_channel("secret", kind="private")
    dm = slack.add_channel("dm", kind="im", user=alice)
    assert private.startswith("G") and dm.startswith("D")
    info = web.conversations_info(channel=dm)["channel"]
    assert info["id"] == dm and info["is_im"] and info["is_private"] and not info["is_channel"]
    assert web.conversations_info(channel=private)["channel"]["is_private"] is True
    user = web.users_info(user=alice)["user"]
    assert (user["id"], user["name"], user["is_bot"]) == (alice, "alice", False)
    assert web.users_info(user="UBOT")["user"]["is_bot"] is True

    ts = slack.user_message(dm, alice, "hi")["event"]["ts"]
    web.reactions_add(channel=dm, timestamp=ts, name="eyes")
    stored = slack.message(dm, ts)
    assert stored is not None and stored["reactions"] == [{"name": "eyes", "users": ["UBOT"], "count": 1}]
    assert slack_error(lambda: web.reactions_add(channel=dm, timestamp=ts, name="eyes")).response["error"] == (
        "already_reacted"
    )

    web.assistant_threads_setStatus(channel_id=dm, thread_ts=ts, status="is thinking...")
    web.assistant_threads_setTitle(channel_id=dm, thread_ts=ts, title="Chat")
    web.assistant_threads_setSuggestedPrompts(channel_id=dm, thread_ts=ts, prompts=[{"title": "a", "message": "b"}])
    [status] = slack.calls_to("assistant.threads.setStatus")
    assert status.args == {"channel_id": dm, "thread_ts": ts, "status": "is thinking..."}
    assert slack.calls_to("assistant.threads.setSuggestedPrompts")[0].args["prompts"] == [
        {"title": "a", "message": "b"}
    ]
    # The thread keeps its title; the status shows until the app replies there, or clears it.
    key = f"{dm}|{ts}"
    assert (slack.workspace.titles[key], slack.workspace.statuses[key]) == ("Chat", "is thinking...")
    web.chat_postMessage(channel=dm, thread_ts=ts, text="Here you go")
    assert key not in slack.workspace.statuses and slack.workspace.titles[key] == "Chat"
    web.assistant_threads_setStatus(channel_id=dm, thread_ts=ts, status="is searching...")
    web.assistant_threads_setStatus(channel_id=dm, thread_ts=ts, status="")
    assert key not in slack.workspace.statuses
    assert (
        slack_error(lambda: web.assistant_threads_setTitle(channel_id=dm, thread_ts=ts, title=" ")).response["error"]
        == "invalid_arguments"
    )


def test_streaming_builds_one_message(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    parent = slack.mention(ch, alice, "stream please")["event"]["ts"]
    # slack_sdk's own ChatStream helper sends markdown_text chunks.
    streamer = web.chat_stream(channel=ch, thread_ts=parent, buffer_size=4)
    streamer.append(markdown_text="Hello, ")
    streamer.append(markdown_text="world")
    done = streamer.stop(markdown_text="!")
    assert slack.messages(ch, thread_ts=parent)[1]["text"] == "Hello, world!"
    assert done["message"]["bot_id"] == "BBOT"

    ts = web.chat_startStream(channel=ch, thread_ts=parent, markdown_text="a")["ts"]
    web.chat_appendStream(channel=ch, ts=ts, markdown_text="b")
    blocks = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "feedback"}]}]
    web.chat_stopStream(channel=ch, ts=ts, markdown_text="c", blocks=blocks)
    final = slack.message(ch, ts)
    assert final is not None and final["text"] == "abc" and final["blocks"] == blocks
    err = slack_error(lambda: web.chat_appendStream(channel=ch, ts=ts, markdown_text="late"))
    assert err.response["error"] == "message_not_in_streaming_state"


def test_auth_errors(slack: LocalSlack, ch: str) -> None:
    wrong = WebClient(token="xoxb-wrong", base_url=slack.api_url)
    assert slack_error(lambda: wrong.chat_postMessage(channel=ch, text="x")).response["error"] == "invalid_auth"
    anonymous = WebClient(base_url=slack.api_url)
    assert slack_error(lambda: anonymous.auth_test()).response["error"] == "not_authed"
    assert slack.messages(ch) == []
    assert [c.token for c in slack.calls] == ["xoxb-wrong", None]


def test_unknown_method_answers_http_200(slack: LocalSlack, web: WebClient) -> None:
    err = slack_error(lambda: web.api_call("chat.teleport", json={"x": 1}))
    assert err.response.status_code == 200 and err.response["error"] == "unknown_method"
    assert slack.calls_to("chat.teleport")[0].args == {"x": 1}


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
def test_argument_errors(web: WebClient, ch: str) -> None:
    assert slack_error(lambda: web.chat_postMessage(channel=ch)).response["error"] == "no_text"
    assert slack_error(lambda: web.chat_postMessage(channel="C404", text="x")).response["error"] == "channel_not_found"
    err = slack_error(lambda: web.api_call("conversations.replies", params={"channel": ch}))
    assert err.response["error"] == "invalid_arguments"


def test_fail_next_rate_limits_then_recovers(slack: LocalSlack, web: WebClient, ch: str) -> None:
    slack.fail_next("chat.postMessage", retry_after=3)
    err = slack_error(lambda: web.chat_postMessage(channel=ch, text="x"))
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "3" and err.response["error"] == "ratelimited"
    assert slack.messages(ch) == []

    assert web.chat_postMessage(channel=ch, text="x")["ok"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]

    slack.fail_next("chat.update", error="internal_error", status=500, times=2)
    for _ in range(2):
        err = slack_error(lambda: web.chat_update(channel=ch, ts="1.1", text="x"))
        assert err.response.status_code == 500 and "Retry-After" not in err.response.headers


def test_form_encoded_requests_decode_json_fields(slack: LocalSlack, ch: str) -> None:
    blocks = [{"type": "divider"}]
    body = {"token": TOKEN, "channel": ch, "text": "[not json]", "blocks": json.dumps(blocks)}
    resp = requests.post(slack.api_url + "chat.postMessage", data=body, timeout=5)
    assert resp.status_code == 200 and resp.json()["ok"] is True
    [call] = slack.calls_to("chat.postMessage")
    assert call.token == TOKEN and call.args == {"channel": ch, "text": "[not json]", "blocks": blocks}


def test_response_url_records_and_renders(slack: LocalSlack, ch: str, alice: str) -> None:
    url = slack.response_url(ch, alice)
    assert url.startswith(slack.base_url + "/response/")
    response_id = url.rsplit("/", 1)[1]

    assert requests.post(url, json={"response_type": "in_channel", "text": "public"}, timeout=5).json()["ok"]
    requests.post(url, json={"response_type": "in_channel", "text": "edited", "replace_original": True}, timeout=5)
    requests.post(url, json={"text": "just for you"}, timeout=5)

    [posted] = slack.messages(ch)
    assert posted["text"] == "edited" and posted["bot_id"] == "BBOT"
    [private] = slack.ephemerals(ch)
    assert (private["user"], private["text"], private["via"]) == (alice, "just for you", "response_url")
    calls = slack.calls_to("response_url")
    assert calls[0].args == {"response_type": "in_channel", "text": "public", "response_id": response_id}
    assert calls[0].token is None and len(calls) == 3
    assert requests.post(slack.base_url + "/response/R404", json={"text": "x"}, timeout=5).status_code == 404


def test_wait_for_blocks_until_the_call_arrives(slack: LocalSlack, web: WebClient, ch: str) -> None:
    def later() -> None:
        time.sleep(0.1)
        web.chat_postMessage(channel=ch, text="one")
        web.chat_postMessage(channel=ch, text="two")

    threading.Thread(target=later, daemon=True).start()
    calls = slack.wait_for("chat.postMessage", lambda c: c.args.get("text") == "two", timeout=5)
    assert [c.args["text"] for c in calls] == ["two"]
    assert len(slack.wait_for("chat.postMessage", count=2, timeout=1)) == 2

    with pytest.raises(AssertionError) as info:
        slack.wait_for("chat.delete", timeout=0.1)
    assert "chat.delete" in str(info.value) and "chat.postMessage" in str(info.value) and "'two'" not in str(info.value)


# -- events the bot receives ---------------------------------------------


def test_event_envelopes(slack: LocalSlack, ch: str, alice: str) -> None:
    env = slack.mention(ch, alice, "hello")
    event = env["event"]
    assert env["type"] == "event_callback" and env["team_id"] == "T0001" and env["api_app_id"] == "A0001"
    assert env["event_id"].startswith("Ev") and env["event_time"] == int(float(event["ts"]))
    assert env["authorizations"][0]["user_id"] == "UBOT" and env["authorizations"][0]["is_bot"] is True
    assert (event["type"], event["user"], event["text"], event["channel"]) == (
        "app_mention",
        alice,
        "<@UBOT> hello",
        ch,
    )
    assert event["event_ts"] == event["ts"] and "thread_ts" not in event
    threaded = slack.mention(ch, alice, "again", thread_ts=event["ts"])["event"]
    assert threaded["thread_ts"] == event["ts"]
    assert slack.mention(ch, alice, "")["event"]["text"] == "<@UBOT>"

    dm = slack.add_channel("dm", kind="im", user=alice)
    message = slack.user_message(dm, alice, "hi")["event"]
    assert (message["type"], message["channel_type"], message["text"]) == ("message", "im", "hi")
    assert "subtype" not in message
    other = slack.bot_message(ch, "beep")["event"]
    assert (other["subtype"], other["bot_id"], other["channel_type"]) == ("bot_message", "BOTHER", "channel")

    changed = slack.edited_message(dm, message["ts"], "hi there")["event"]
    assert changed["subtype"] == "message_changed" and changed["channel"] == dm
    assert changed["message"]["text"] == "hi there" and changed["previous_message"]["text"] == "hi"
    assert slack.messages(dm)[0]["text"] == "hi there"
    assert env["event_id"] != slack.mention(ch, alice, "x")["event_id"]


# -- SlackClient towards a bot -------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    """Stands in for the bot: keeps what arrives, answers 200."""

    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []  # replaced per fixture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slack/events", received
    server.shutdown()
    server.server_close()


def test_slack_client_requests_pass_slack_sdk_verification(
    slack: LocalSlack, ch: str, alice: str, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    client = SlackClient(bot_url=url, signing_secret=SECRET)
    verifier = SignatureVerifier(SECRET)
    envelope = slack.mention(ch, alice, "hi")

    assert client.send_event(envelope).status_code == 200
    assert client.send_event(envelope, retry_num=1).status_code == 200
    client.send_command(text="ask what?", channel_id=ch, user_id=alice, response_url=slack.response_url(ch, alice))
    client.send_interaction({"type": "block_actions", "actions": []})
    client.send_raw(b"{not json", "application/json")
    client.send_event(envelope, bad_signature=True)
    client.send_event(envelope, timestamp=int(time.time()) - 600)

    verdicts = [verifier.is_valid_request(body, headers) for headers, body in received]
    assert verdicts == [True, True, True, True, True, False, False]
    (first_headers, first_body), (retry_headers, _) = received[0], received[1]
    assert json.loads(first_body) == envelope and first_headers["content-type"] == "application/json"
    assert "x-slack-retry-num" not in first_headers
    assert (retry_headers["x-slack-retry-num"], retry_headers["x-slack-retry-reason"]) == ("1", "http_timeout")
    command = {k: v[0] for k, v in parse_qs(received[2][1].decode(), keep_blank_values=True).items()}
    assert (command["command"], command["text"], command["channel_id"], command["user_id"]) == (
        "/ember",
        "ask what?",
        ch,
        alice,
    )
    assert command["response_url"].startswith(slack.base_url + "/response/")
    payload = parse_qs(received[3][1].decode())["payload"][0]
    assert json.loads(payload) == {"type": "block_actions", "actions": []}
    assert received[4][1] == b"{not json"


def test_a_slack_bolt_app_runs_against_the_fake(
    slack: LocalSlack, ch: str, alice: str, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    """End to end: Bolt verifies the signature, parses our envelope, and replies through the fake."""
    from slack_bolt import App
    from slack_bolt.request import BoltRequest

    app = App(client=WebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET)

    @app.event("app_mention")
    def reply(event: dict[str, Any], say: Any) -> None:
        say(text=f"echo: {event['text']}", thread_ts=event["ts"])

    url, received = receiver
    envelope = slack.mention(ch, alice, "ping")
    SlackClient(bot_url=url, signing_secret=SECRET).send_event(envelope)
    headers, body = received[0]
    bolt_headers: dict[str, str | Sequence[str]] = dict(headers)
    assert app.dispatch(BoltRequest(body=body.decode(), headers=bolt_headers)).status == 200

    [call] = slack.wait_for("chat.postMessage", timeout=5)
    assert call.args["thread_ts"] == envelope["event"]["ts"]
    assert [m["text"] for m in slack.messages(ch, thread_ts=envelope["event"]["ts"])] == [
        "<@UBOT> ping",
        "echo: <@UBOT> ping",
    ]


def test_command_payload_and_block_action_builders(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    fields = slack.command_payload(ch, alice, "ask what?")
    assert (fields["channel_name"], fields["user_name"], fields["command"]) == ("general", "alice", "/ember")
    ts = web.chat_postMessage(channel=ch, text="rate me")["ts"]
    payload = slack.block_action(ch, alice, ts, "feedback_up", value="1")
    assert payload["type"] == "block_actions" and payload["container"]["message_ts"] == ts
    assert payload["actions"][0]["action_id"] == "feedback_up" and payload["actions"][0]["value"] == "1"
    assert payload["message"]["text"] == "rate me" and payload["user"]["id"] == alice


# -- membership, directories and back-dated history ----------------------


def test_membership_decides_what_the_bot_can_read_and_post(slack: LocalSlack, web: WebClient, alice: str) -> None:
    outside = slack.add_channel("outside", members=[alice], bot_member=False)
    hidden = slack.add_channel("hidden", kind="private", members=[alice], bot_member=False)
    ts = {ch: slack.seed(ch, alice, "hello", at=time.time() - 60) for ch in (outside, hidden)}

    def error(call: Any) -> str:
        return str(slack_error(call).response["error"])

    # A public channel says not_in_channel; a private one is hidden from non-members altogether.
    for channel, expected in ((outside, "not_in_channel"), (hidden, "channel_not_found")):
        assert error(lambda c=channel: web.conversations_history(channel=c)) == expected
        assert error(lambda c=channel: web.conversations_replies(channel=c, ts=ts[c])) == expected
        assert error(lambda c=channel: web.chat_postMessage(channel=c, text="hi")) == expected
    assert error(lambda: web.conversations_info(channel=hidden)) == "channel_not_found"
    assert error(lambda: web.conversations_members(channel=hidden)) == "channel_not_found"
    assert web.conversations_info(channel=outside)["channel"]["is_member"] is False
    assert web.conversations_members(channel=outside)["members"] == [alice]

    slack.join(outside, "UBOT")
    assert web.conversations_info(channel=outside)["channel"]["is_member"] is True
    assert [m["text"] for m in web.conversations_history(channel=outside)["messages"]] == ["hello"]
    assert web.chat_postMessage(channel=outside, text="hi")["ok"]
    slack.leave(outside, "UBOT")
    assert error(lambda: web.conversations_history(channel=outside)) == "not_in_channel"

    # The bot is in every channel by default; an IM holds the bot and its user.
    bob = slack.add_user("bob")

    def members(channel: str) -> set[str]:
        return set(web.conversations_members(channel=channel)["members"])

    assert members(slack.add_channel("general")) == {"UBOT"}
    assert members(slack.add_channel("dm", kind="im", user=alice)) == {"UBOT", alice}
    assert members(slack.add_channel("trio", kind="mpim", members=[alice, bob])) == {"UBOT", alice, bob}
    opened = web.conversations_open(users=bob)["channel"]["id"]
    assert members(opened) == {"UBOT", bob} and web.conversations_info(channel=opened)["channel"]["is_member"]


def test_a_user_token_reads_only_where_its_user_is_a_member(slack: LocalSlack, alice: str) -> None:
    slack.add_token("xoxp-alice", alice)
    as_alice = WebClient(token="xoxp-alice", base_url=slack.api_url)
    mine = slack.add_channel("mine", members=[alice])
    theirs = slack.add_channel("theirs")
    assert as_alice.conversations_info(channel=mine)["channel"]["is_member"] is True
    assert as_alice.conversations_info(channel=theirs)["channel"]["is_member"] is False
    assert as_alice.conversations_history(channel=mine)["messages"] == []
    err = slack_error(lambda: as_alice.conversations_history(channel=theirs))
    assert err.response["error"] == "not_in_channel"


def test_users_conversations_lists_memberships_page_by_page(slack: LocalSlack, web: WebClient, alice: str) -> None:
    general = slack.add_channel("general", members=[alice])
    random = slack.add_channel("random", members=[alice])
    eng = slack.add_channel("eng")
    secret = slack.add_channel("secret", kind="private", members=[alice])
    hidden = slack.add_channel("hidden", kind="private", members=[alice], bot_member=False)
    dm = slack.add_channel("dm", kind="im", user=alice)
    old = slack.add_channel("old", members=[alice])
    slack.archive(old)
    both = "public_channel,private_channel"

    def listed(**args: Any) -> list[str]:
        """Every page of users.conversations, following next_cursor to the end."""
        ids: list[str] = []
        cursor = None
        while True:
            page = web.users_conversations(cursor=cursor, **args)
            assert "has_more" not in page.data
            ids += [c["id"] for c in page["channels"]]
            cursor = page["response_metadata"]["next_cursor"]
            if not cursor:
                return ids

    # The bot's own memberships, two at a time: every channel exactly once, in creation order.
    assert listed(types=both, limit=2) == [general, random, eng, secret, old]
    assert listed(types=both, limit=2, exclude_archived=True) == [general, random, eng, secret]
    assert listed() == [general, random, eng, old]  # public_channel is the default type
    first = web.users_conversations(types=both, limit=2)
    assert len(first["channels"]) == 2 and first["response_metadata"]["next_cursor"]

    # Another user's: their private channels only where the bot is in them too.
    assert listed(user=alice, types=both, limit=2) == [general, random, secret, old]
    assert hidden not in listed(user=alice, types="private_channel")
    assert listed(user=alice, types=["im", "mpim"]) == [dm]
    [item] = web.users_conversations(user=alice, types="private_channel")["channels"]
    assert item == web.conversations_info(channel=secret)["channel"]
    assert (item["name"], item["is_private"], item["is_member"]) == ("secret", True, True)

    assert slack_error(lambda: web.users_conversations(types="channels")).response["error"] == "invalid_types"
    assert slack_error(lambda: web.users_conversations(user="U404")).response["error"] == "user_not_found"
    err = slack_error(lambda: web.users_conversations(cursor="not a cursor"))
    assert err.response["error"] == "invalid_cursor"


def test_conversations_members_paginates(slack: LocalSlack, web: WebClient) -> None:
    people = [slack.add_user(f"person{i}") for i in range(5)]
    channel = slack.add_channel("crowd", members=people)
    seen: list[str] = []
    cursor = None
    while True:
        page = web.conversations_members(channel=channel, limit=2, cursor=cursor)
        assert len(page["members"]) <= 2
        seen += page["members"]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted([*people, "UBOT"]) and len(seen) == 6
    assert len(web.conversations_members(channel=channel)["members"]) == 6


def test_users_info_reports_the_time_zone(slack: LocalSlack, web: WebClient) -> None:
    berlin = web.users_info(user=slack.add_user("alice", tz="Europe/Berlin"))["user"]
    assert berlin["tz"] == "Europe/Berlin" and berlin["tz_offset"] in (3600, 7200)
    assert (
        berlin["tz_label"] == {3600: "Central European Time", 7200: "Central European Summer Time"}[berlin["tz_offset"]]
    )
    utc = web.users_info(user=slack.add_user("bob"))["user"]
    assert (utc["tz"], utc["tz_label"], utc["tz_offset"]) == ("UTC", "Coordinated Universal Time", 0)
    kolkata = web.users_info(user=slack.add_user("carol", tz="Asia/Kolkata"))["user"]
    assert (kolkata["tz"], kolkata["tz_offset"]) == ("Asia/Kolkata", 19800) and kolkata["tz_label"]
    with pytest.raises(ValueError, match="time zone"):
        slack.add_user("dave", tz="Mars/Olympus_Mons")


def test_seeded_history_pages_back_newest_first(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    start = float(int(time.time()) - 7 * 86400)  # whole seconds: the `oldest` bound below is exact
    # 5,000 messages a minute apart, seeded out of order; the newest 2,500 are the window.
    order = list(range(5000))
    order = order[1::2] + order[::2][::-1]
    for i in order:
        slack.seed(ch, alice, f"m{i}", at=start + i * 60)
    stored = slack.messages(ch)
    assert [m["text"] for m in stored] == [f"m{i}" for i in range(5000)]
    assert len({m["ts"] for m in stored}) == 5000

    oldest = f"{start + 2499 * 60:.6f}"
    texts: list[str] = []
    cursor = None
    while True:
        page = web.conversations_history(channel=ch, oldest=oldest, limit=200, cursor=cursor)
        texts += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not page["has_more"]:
            assert cursor == ""
            break
    assert texts == [f"m{i}" for i in range(4999, 2499, -1)]
    assert len(slack.calls_to("conversations.history")) == 13

    # Seeds at one instant still get distinct timestamps, in seeding order.
    a, b = (slack.seed(ch, alice, text, at=start - 1) for text in ("first", "second"))
    assert TS_FORMAT.match(a) and a < b and slack.messages(ch)[:2] == [slack.message(ch, a), slack.message(ch, b)]


def test_seeded_threads_bot_messages_and_reactions(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    bob = slack.add_user("bob")
    now = time.time()
    parent = slack.seed(ch, alice, "old question", at=now - 5 * 86400)
    first = slack.seed(ch, bob, "late answer", at=now - 600, thread_ts=parent)
    slack.seed(ch, alice, "thanks", at=now - 300, thread_ts=first)  # a reply to a reply joins the thread

    # The parent is older than `oldest` but still leads the page; the bounds apply to the replies.
    oldest = f"{now - 3600:.6f}"
    replies = web.conversations_replies(channel=ch, ts=parent, oldest=oldest, inclusive=True)
    assert [m["text"] for m in replies["messages"]] == ["old question", "late answer", "thanks"]
    head = replies["messages"][0]
    assert (head["reply_count"], head["reply_users"], head["thread_ts"]) == (2, [bob, alice], parent)
    assert head["latest_reply"] == replies["messages"][2]["ts"]
    assert all(m["thread_ts"] == parent and m["parent_user_id"] == alice for m in replies["messages"][1:])
    assert web.conversations_history(channel=ch, oldest=oldest)["messages"] == []
    assert [m["text"] for m in web.conversations_history(channel=ch)["messages"]] == ["old question"]

    # A parent seeded after its reply still gathers it.
    later = "1700000000.000000"
    slack.seed(ch, bob, "reply first", at=1700000100, thread_ts=later)
    assert slack.seed(ch, alice, "parent second", at=1700000000) == later
    root = slack.message(ch, later)
    assert root is not None and root["reply_count"] == 1 and root["reply_users"] == [bob]
    assert slack.messages(ch, later)[1]["parent_user_id"] == alice

    mine = slack.message(ch, slack.seed(ch, alice, "an old digest", at=now - 60, bot=True))
    assert mine is not None and (mine["user"], mine["bot_id"]) == ("UBOT", "BBOT") and "client_msg_id" not in mine
    marked = slack.message(ch, slack.seed(ch, bob, "off the record", at=now - 30, reactions=["no_entry_sign"]))
    assert marked is not None and marked["reactions"] == [{"name": "no_entry_sign", "users": [bob], "count": 1}]
    assert marked["user"] == bob and marked["client_msg_id"]


def test_react_stores_a_reaction_and_builds_its_event(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    ts = web.chat_postMessage(channel=ch, text="answer")["ts"]
    envelope = slack.react(ch, ts, alice, ":+1:")
    event = envelope["event"]
    assert envelope["type"] == "event_callback" and event["type"] == "reaction_added"
    assert (event["user"], event["reaction"], event["item_user"]) == (alice, "+1", "UBOT")
    assert event["item"] == {"type": "message", "channel": ch, "ts": ts}
    web.reactions_add(channel=ch, timestamp=ts, name="+1")
    stored = slack.message(ch, ts)
    assert stored is not None and stored["reactions"] == [{"name": "+1", "users": [alice, "UBOT"], "count": 2}]
    with pytest.raises(ValueError, match="already reacted"):
        slack.react(ch, ts, alice, "+1")
    with pytest.raises(ValueError, match="no message"):
        slack.react(ch, "1.000001", alice, "+1")


def test_permalinks_of_seeded_messages_and_replies(slack: LocalSlack, web: WebClient, ch: str, alice: str) -> None:
    parent = slack.seed(ch, alice, "question", at=time.time() - 100)
    reply = slack.seed(ch, alice, "answer", at=time.time() - 50, thread_ts=parent)
    link = web.chat_getPermalink(channel=ch, message_ts=parent)["permalink"]
    assert link == f"{slack.base_url}/archives/{ch}/p{parent.replace('.', '')}"
    reply_link = web.chat_getPermalink(channel=ch, message_ts=reply)["permalink"]
    assert reply_link == f"{slack.base_url}/archives/{ch}/p{reply.replace('.', '')}?thread_ts={parent}&cid={ch}"
    err = slack_error(lambda: web.chat_getPermalink(channel=ch, message_ts="1.000001"))
    assert err.response["error"] == "message_not_found"


def test_rate_limited_reads_are_retried_by_slack_sdk(slack: LocalSlack, ch: str, alice: str) -> None:
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    web = WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    parent = slack.seed(ch, alice, "question", at=time.time() - 100)
    slack.seed(ch, alice, "answer", at=time.time() - 50, thread_ts=parent)

    slack.fail_next("conversations.history", status=429, retry_after=1)
    assert [m["text"] for m in web.conversations_history(channel=ch)["messages"]] == ["question"]
    slack.fail_next("conversations.replies", status=429, retry_after=0)
    assert [m["text"] for m in web.conversations_replies(channel=ch, ts=parent)["messages"]] == ["question", "answer"]

    history, replies = slack.calls_to("conversations.history"), slack.calls_to("conversations.replies")
    assert [c.status for c in history] == [429, 200] and [c.status for c in replies] == [429, 200]
    assert history[0].response == {"ok": False, "error": "ratelimited"}


def test_a_message_shortcut_reaches_bolts_shortcut_listeners(
    slack: LocalSlack, ch: str, alice: str, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    from slack_bolt import App
    from slack_bolt.request import BoltRequest

    app = App(client=WebClient(token=TOKEN, base_url=slack.api_url), signing_secret=SECRET)
    seen: list[tuple[str, str | None, str | None, str]] = []

    def summarize(ack: Any, shortcut: dict[str, Any], context: Any, respond: Any) -> None:
        ack()
        seen.append((shortcut["callback_id"], context.channel_id, context.user_id, shortcut["message"]["text"]))
        respond(text=f"Summary of {shortcut['message_ts']}")

    # By callback_id alone (any shortcut), and through Bolt's message-shortcut matcher.
    app.shortcut("summarize_thread")(summarize)
    app.shortcut({"type": "message_action", "callback_id": "summarize_again"})(summarize)

    root = slack.seed(ch, alice, "should we cache the builds?", at=time.time() - 600)
    payload = slack.message_shortcut(ch, alice, root, "summarize_thread")
    assert {k: payload[k] for k in ("type", "callback_id", "message_ts", "channel")} == {
        "type": "message_action",
        "callback_id": "summarize_thread",
        "message_ts": root,
        "channel": {"id": ch, "name": "general"},
    }
    assert (payload["user"]["id"], payload["user"]["name"], payload["team"]["id"]) == (alice, "alice", "T0001")
    assert payload["message"] == slack.message(ch, root) and payload["trigger_id"] and payload["action_ts"]
    assert payload["response_url"].startswith(slack.base_url + "/response/")

    url, received = receiver
    client = SlackClient(bot_url=url, signing_secret=SECRET)
    client.send_interaction(payload)
    client.send_interaction(slack.message_shortcut(ch, alice, root, "summarize_again"))
    for headers, body in received:
        bolt_headers: dict[str, str | Sequence[str]] = dict(headers)
        assert app.dispatch(BoltRequest(body=body.decode(), headers=bolt_headers)).status == 200

    slack.wait_for("response_url", timeout=5, count=2)
    text = "should we cache the builds?"
    assert sorted(seen) == [("summarize_again", ch, alice, text), ("summarize_thread", ch, alice, text)]
    shown = slack.ephemerals(ch)
    assert [(e["user"], e["text"], e["via"]) for e in shown] == [(alice, f"Summary of {root}", "response_url")] * 2
    with pytest.raises(ValueError, match="no message"):
        slack.message_shortcut(ch, alice, "1.000001", "summarize_thread")
