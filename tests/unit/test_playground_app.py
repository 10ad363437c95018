"""The playground's people and their actions, delivered to a real Slack Bolt app over HTTP.

The receiving app is a small real Bolt `App` (signature verification on) behind a tiny threaded
HTTP server; its listeners answer through the playground's Web API, as an app answers Slack.
Everything asserted is what a person would see on the page or what the app received. Waits are
deadline loops on those, never on the clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond, Say
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from playground.app import MAX_MESSAGE_CHARS, Playground

SECRET = "playground-test-signing-secret"
T = TypeVar("T")

FORM = {
    "type": "modal",
    "callback_id": "form",
    "title": {"type": "plain_text", "text": "Tell me"},
    "submit": {"type": "plain_text", "text": "Send"},
    "blocks": [
        {
            "type": "input",
            "block_id": "answer",
            "label": {"type": "plain_text", "text": "Answer"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        }
    ],
}
REPLY_BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "echo"}},
    {
        "type": "actions",
        "block_id": "tools",
        "elements": [
            {
                "type": "button",
                "action_id": "open_form",
                "value": "form",
                "text": {"type": "plain_text", "text": "Tell me more"},
            }
        ],
    },
    {
        "type": "context_actions",
        "block_id": "feedback",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": "vote",
                "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "up"},
                "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": "down"},
            }
        ],
    },
]
CONFIRM_BLOCKS = [
    {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "confirm", "text": {"type": "plain_text", "text": "Go ahead"}},
        ],
    }
]


def wait_until(probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {timeout} s")
        time.sleep(0.02)


@dataclass
class Receiver:
    """What reached the app: every request as it arrived, and what Bolt's listeners were given."""

    url: str = ""
    arrived: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    got: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with HTTP 500 before Bolt sees them

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [g for g in self.got if g.get("type") == kind or g.get("command") == kind]


def bolt_app(pg: Playground, receiver: Receiver) -> App:
    app = App(client=WebClient(token=pg.slack.bot_token, base_url=pg.slack.api_url), signing_secret=SECRET)
    got = receiver.got

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Say) -> None:
        got.append(event)
        say(text=f"echo: {event['text']}", thread_ts=event["ts"], blocks=REPLY_BLOCKS)

    @app.event("message")
    def message(event: dict[str, Any], say: Say) -> None:
        got.append(event)
        if event.get("channel_type") == "im":
            say(text=f"dm echo: {event['text']}")

    @app.event("reaction_added")
    def added(event: dict[str, Any]) -> None:
        got.append(event)

    @app.event("reaction_removed")
    def removed(event: dict[str, Any]) -> None:
        got.append(event)

    @app.command("/ember")
    def ember(ack: Ack, command: dict[str, Any]) -> None:
        got.append(command)
        if command["text"] == "confirm":
            ack(text="Sure?", blocks=CONFIRM_BLOCKS)
        else:
            ack(text=f"you said {command['text']}", response_type="ephemeral")

    @app.action("open_form")
    def open_form(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        got.append(body)
        client.views_open(trigger_id=body["trigger_id"], view=FORM)

    @app.action("vote")
    def vote(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        got.append(body)
        value = body["actions"][0]["value"]
        thread = body["container"].get("thread_ts")
        client.chat_postEphemeral(channel=body["channel"]["id"], user=body["user"]["id"], text=value, thread_ts=thread)

    @app.action("confirm")
    def confirm(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        got.append(body)
        respond(text="Done.", replace_original=True)

    @app.view("form")
    def form(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        text = view["state"]["values"]["answer"]["text"]["value"]
        if not text.strip():
            ack(response_action="errors", errors={"answer": "Write something"})
            return
        ack()
        got.append(body)

    return app


def serve(app: App, receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.arrived.append((headers, body))
            if receiver.fail_next > 0:
                receiver.fail_next -= 1
                self._answer(500, {}, b"")
                return
            bolt = app.dispatch(BoltRequest(body=body.decode(), headers={k: [v] for k, v in headers.items()}))
            names = {k: v for k, v in bolt.headers.items() if k.lower() != "content-length"}
            self._answer(bolt.status, names, bolt.body.encode())

        def _answer(self, status: int, headers: dict[str, Any], body: bytes) -> None:
            self.send_response(status)
            for name, values in headers.items():
                for value in values:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/slack/events"
    return server


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    playground = Playground(tmp_path / "data", signing_secret=SECRET).start()
    yield playground
    playground.stop()
    assert playground.slack.server_errors == []


@pytest.fixture
def receiver(pg: Playground) -> Iterator[Receiver]:
    received = Receiver()
    server = serve(bolt_app(pg, received), received)
    pg.events_url = received.url
    yield received
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class People:
    ana: str
    ben: str
    cleo: str
    general: str
    random: str
    leads: str
    dm: dict[str, str]  # person -> their IM with Ember


@pytest.fixture
def people(pg: Playground) -> People:
    ids = {p["name"]: p["id"] for p in pg.people()}
    channels = {c["label"]: c["id"] for c in pg.directory(ids["ana"])["channels"]}
    dm = {name: _dm(pg, person) for name, person in ids.items()}
    return People(
        ids["ana"], ids["ben"], ids["cleo"], channels["#general"], channels["#random"], channels["🔒 leads"], dm
    )


def _dm(pg: Playground, user: str) -> str:
    [dm] = [c["id"] for c in pg.directory(user)["channels"] if c["kind"] == "im"]
    return dm


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages]


# -- who is there and what they can see -------------------------------------------------------


def test_the_seeded_workspace_shows_each_person_only_their_conversations(pg: Playground, people: People) -> None:
    assert [(p["name"], p["real_name"]) for p in pg.people()] == [
        ("ana", "Ana Lima"),
        ("ben", "Ben Okafor"),
        ("cleo", "Cleo Park"),
    ]
    ana = pg.directory(people.ana)
    assert ana["me"] == {"id": people.ana, "name": "ana", "real_name": "Ana Lima"}
    assert ana["bot"] == {"id": pg.slack.workspace.bot_user_id, "name": "Ember"}
    assert [(c["label"], c["kind"]) for c in ana["channels"]] == [
        ("#general", "public"),
        ("#random", "public"),
        ("🔒 leads", "private"),
        ("Ember (DM)", "im"),
    ]
    cleo = pg.directory(people.cleo)
    assert [c["label"] for c in cleo["channels"]] == ["#general", "#random", "Ember (DM)"]
    assert {people.leads, people.dm["ana"]}.isdisjoint(c["id"] for c in cleo["channels"])
    assert people.dm["cleo"] != people.dm["ana"]

    for hidden in (people.leads, people.dm["ana"]):
        assert pg.history(people.cleo, hidden) == {
            "ok": False,
            "error": "channel_not_found",
            "message": "That conversation does not exist, or you can't see it.",
        }
        assert pg.thread(people.cleo, hidden, "1.000001")["error"] == "channel_not_found"
        assert pg.send(people.cleo, hidden, "let me in")["error"] == "channel_not_found"
    assert pg.history(people.ana, people.leads)["ok"] is True
    assert pg.directory("UNOBODY")["error"] == "user_not_found"
    assert pg.send("UNOBODY", people.general, "hi")["error"] == "user_not_found"


# -- messages ---------------------------------------------------------------------------------


def test_a_mention_reaches_the_app_signed_and_its_reply_shows_in_the_thread(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    bot = pg.slack.workspace.bot_user_id
    sent = pg.send(people.ana, people.general, "@Ember what does @ben think? mail ana@example.com")
    assert sent["ok"] is True
    stored = f"<@{bot}> what does <@{people.ben}> think? mail ana@example.com"
    assert sent["message"]["text"] == stored

    [event] = wait_until(lambda: receiver.of("app_mention"))
    assert (event["user"], event["channel"], event["text"], event["ts"]) == (
        people.ana,
        people.general,
        stored,
        sent["ts"],
    )
    [section] = event["blocks"][0]["elements"]
    assert [e["type"] for e in section["elements"]] == ["user", "text", "user", "text"]
    verifier = SignatureVerifier(SECRET)
    assert all(verifier.is_valid_request(body, headers) for headers, body in receiver.arrived)

    thread = wait_until(lambda: pg.thread(people.ana, people.general, sent["ts"])["replies"])
    [reply] = thread
    assert reply["text"] == f"echo: {stored}" and reply["author"]["is_bot"] is True
    history = pg.history(people.ana, people.general)
    [top] = history["messages"]  # the reply stays in the thread
    assert (top["author"]["name"], top["reply_count"], top["streaming"]) == ("ana", 1, False)
    assert top["permalink"].startswith(pg.slack.base_url + f"/archives/{people.general}/p")
    assert pg.history(people.cleo, people.general)["messages"][0]["ts"] == sent["ts"]  # a public channel


def test_a_direct_message_is_delivered_as_a_message_im_event(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    dm = people.dm["ben"]
    sent = pg.send(people.ben, dm, "hello there")
    [event] = wait_until(lambda: receiver.of("message"))
    assert (event["channel"], event["channel_type"], event["user"], event["text"]) == (
        dm,
        "im",
        people.ben,
        "hello there",
    )
    assert event["client_msg_id"] == sent["message"]["client_msg_id"]
    wait_until(lambda: len(pg.history(people.ben, dm)["messages"]) == 2)
    assert texts(pg.history(people.ben, dm)["messages"]) == ["hello there", "dm echo: hello there"]

    # A reply in a thread of the DM carries the thread.
    pg.send(people.ben, dm, "and more", thread_ts=sent["ts"])
    wait_until(lambda: len(receiver.of("message")) == 2)
    assert receiver.of("message")[1]["thread_ts"] == sent["ts"]


def test_embers_pane_lists_the_dms_chats_with_their_titles_and_shows_a_status_until_ember_replies(
    pg: Playground, people: People
) -> None:
    dm = people.dm["ana"]
    web = WebClient(token=pg.slack.bot_token, base_url=pg.slack.api_url)
    first = pg.send(people.ana, dm, "Where is the style guide?\nI looked everywhere")
    second = pg.send(people.ana, dm, "What is the VPN host?")
    catch_up = {"title": "Catch me up on #general", "message": f"Catch me up on <#{people.general}>"}
    web.assistant_threads_setSuggestedPrompts(channel_id=dm, prompts=[catch_up])
    web.assistant_threads_setTitle(channel_id=dm, thread_ts=second["ts"], title="The VPN host")
    web.assistant_threads_setStatus(channel_id=dm, thread_ts=second["ts"], status="is thinking…")

    pane = pg.agent(people.ana)
    assert (pane["dm"], pane["prompts"]) == (dm, [catch_up])
    assert [(c["ts"], c["title"], c["status"]) for c in pane["chats"]] == [
        (second["ts"], "The VPN host", "is thinking…"),
        (first["ts"], "Where is the style guide?", None),  # untitled: its first line
    ]
    chat = pg.thread(people.ana, dm, second["ts"])
    assert (chat["title"], chat["status"]) == ("The VPN host", "is thinking…")

    web.chat_postMessage(channel=dm, thread_ts=second["ts"], text="It is vpn.acme.internal")
    chat = pg.thread(people.ana, dm, second["ts"])
    assert (chat["status"], texts(chat["replies"])) == (None, ["It is vpn.acme.internal"])
    assert pg.agent(people.ana)["chats"][0]["reply_count"] == 1

    # Ben's pane is his own DM: none of Ana's chats or prompts.
    bens = pg.agent(people.ben)
    assert (bens["dm"], bens["chats"], bens["prompts"]) == (people.dm["ben"], [], [])
    assert pg.agent("UNOBODY")["error"] == "user_not_found"


def test_a_chat_ember_starts_is_listed_by_its_first_line_with_links_by_their_labels(
    pg: Playground, people: People
) -> None:
    dm = people.dm["ana"]
    web = WebClient(token=pg.slack.bot_token, base_url=pg.slack.api_url)
    link = f"<http://127.0.0.1:3000/archives/{people.general}/p1700000000000100|this message>"
    quote = f"You asked me about {link} from <@{people.ben}> in <#{people.general}>:\n> hi"
    web.chat_postMessage(channel=dm, text=quote)
    [chat] = pg.agent(people.ana)["chats"]
    assert chat["title"] == f"You asked me about this message from <@{people.ben}> in…", "the link by its label"
    web.chat_postMessage(channel=dm, text="Your digest of " + "very " * 10 + f"busy <#{people.general}> today")
    title = pg.agent(people.ana)["chats"][0]["title"]
    assert title.endswith("…") and "<#" not in title, "cut before a channel link, never inside it"


def test_the_apps_message_shortcuts_are_listed_and_no_other_runs(tmp_path: Path) -> None:
    with Playground(None, signing_secret=SECRET, shortcuts=[("ember_summarize_thread", "Summarize")]) as pg:
        ana = next(p["id"] for p in pg.people() if p["name"] == "ana")
        assert pg.directory(ana)["shortcuts"] == [{"callback_id": "ember_summarize_thread", "name": "Summarize"}]
        general = next(c["id"] for c in pg.directory(ana)["channels"] if c["label"] == "#general")
        sent = pg.send(ana, general, "a long thread")
        assert pg.shortcut(ana, general, sent["ts"], "ember_no_such_thing")["error"] == "shortcut_not_found"
        assert pg.shortcut(ana, general, "1.000001", "ember_summarize_thread")["error"] == "message_not_found"


def test_empty_and_overlong_messages_are_refused_and_nothing_is_stored_or_sent(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    dm = people.dm["ana"]
    for blank in ("", "   \n\t"):
        refused = pg.send(people.ana, dm, blank)
        assert (refused["ok"], refused["error"]) == (False, "no_text") and refused["message"]
    too_long = pg.send(people.ana, dm, "x" * 50_000)
    assert (too_long["ok"], too_long["error"]) == (False, "msg_too_long") and "40,000" in too_long["message"]
    assert pg.history(people.ana, dm)["messages"] == []

    # The longest Slack takes goes through; delivery is in order, so nothing was sent before it.
    assert pg.send(people.ana, dm, "y" * MAX_MESSAGE_CHARS)["ok"] is True
    wait_until(lambda: receiver.of("message"))
    assert [len(e["text"]) for e in receiver.of("message")] == [MAX_MESSAGE_CHARS]


def test_events_the_app_fails_are_redelivered_with_slacks_retry_headers(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    receiver.fail_next = 1
    pg.send(people.cleo, people.dm["cleo"], "are you there?")
    [event] = wait_until(lambda: receiver.of("message"))
    assert event["text"] == "are you there?"
    first, retry = (headers for headers, _ in receiver.arrived)
    assert "x-slack-retry-num" not in first
    assert (retry["x-slack-retry-num"], retry["x-slack-retry-reason"]) == ("1", "http_error")


# -- slash commands ---------------------------------------------------------------------------


def test_ember_command_answers_only_the_invoker_and_unknown_commands_get_slackbot(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    assert pg.send(people.ana, people.general, "/ember hello") == {"ok": True, "command": "/ember"}
    [command] = receiver.of("/ember")
    assert (command["text"], command["user_id"], command["channel_id"]) == ("hello", people.ana, people.general)
    assert command["response_url"].startswith(pg.slack.base_url) and command["trigger_id"]
    [shown] = pg.history(people.ana, people.general)["ephemerals"]
    assert (shown["text"], shown["author"]["name"]) == ("you said hello", "ember")
    assert pg.history(people.ben, people.general)["ephemerals"] == []
    assert pg.history(people.ana, people.general)["messages"] == []

    pg.send(people.ana, people.general, "/foo bar")
    slackbot = pg.history(people.ana, people.general)["ephemerals"][-1]
    assert slackbot["text"] == (
        '/foo is not a valid command. In Slack, all messages that start with the "/" character '
        "are interpreted as commands."
    )
    assert slackbot["author"]["name"] == "slackbot"
    assert [g.get("command") for g in receiver.got] == ["/ember"]


def test_a_button_on_an_ephemeral_reaches_the_app_and_its_answer_replaces_the_ephemeral(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    pg.send(people.ben, people.random, "/ember confirm")
    [question] = pg.history(people.ben, people.random)["ephemerals"]
    assert question["blocks"] == CONFIRM_BLOCKS
    action = {"action_id": "confirm", "block_id": "", "type": "button"}
    assert pg.click(people.ben, people.random, question["ts"], action) == {"ok": True}
    [body] = receiver.of("block_actions")
    assert body["container"]["is_ephemeral"] is True and "message" not in body
    assert body["actions"][0]["action_id"] == "confirm"
    wait_until(lambda: pg.history(people.ben, people.random)["ephemerals"][0]["text"] == "Done.")
    [answer] = pg.history(people.ben, people.random)["ephemerals"]
    assert answer["ts"] == question["ts"] and "blocks" not in answer
    # Nobody else can click Ben's ephemeral.
    assert pg.click(people.ana, people.random, question["ts"], action)["error"] == "message_not_found"


# -- interactions -----------------------------------------------------------------------------


def _answered_mention(pg: Playground, people: People) -> tuple[str, dict[str, Any]]:
    sent = pg.send(people.ana, people.general, "@ember help")
    [reply] = wait_until(lambda: pg.thread(people.ana, people.general, sent["ts"])["replies"])
    return sent["ts"], reply


def test_a_button_opens_a_modal_for_the_clicker_and_submitting_it_delivers_and_closes_it(
    pg: Playground, people: People, receiver: Receiver
) -> None:
    thread_ts, reply = _answered_mention(pg, people)
    clicked = pg.click(
        people.ana,
        people.general,
        reply["ts"],
        {"action_id": "open_form", "block_id": "tools", "value": "form", "type": "button"},
    )
    assert clicked == {"ok": True}
    [body] = receiver.of("block_actions")
    assert (body["user"]["id"], body["container"]["message_ts"], body["container"]["thread_ts"]) == (
        people.ana,
        reply["ts"],
        thread_ts,
    )
    assert body["actions"][0]["value"] == "form" and body["message"]["ts"] == reply["ts"]

    [opened] = wait_until(lambda: pg.views(people.ana))
    view_id = opened["id"]
    assert view_id.startswith("V") and opened["view"]["callback_id"] == "form" and opened["view"]["hash"]
    assert opened["view"]["state"] == {"values": {}}
    assert pg.views(people.ben) == []

    blank = pg.submit(people.ana, view_id, {"answer": {"text": {"type": "plain_text_input", "value": " "}}})
    assert (blank["ok"], blank["errors"]) == (False, {"answer": "Write something"})
    assert [v["id"] for v in pg.views(people.ana)] == [view_id]

    typed = {"answer": {"text": {"type": "plain_text_input", "value": "more detail"}}}
    assert pg.submit(people.ana, view_id, typed) == {"ok": True}
    [submission] = receiver.of("view_submission")
    assert submission["view"]["id"] == view_id and submission["user"]["id"] == people.ana
    assert submission["view"]["state"]["values"] == typed
    assert pg.views(people.ana) == []
    assert pg.submit(people.ana, view_id, typed)["error"] == "view_not_found"


def test_a_modal_can_be_closed_without_submitting(pg: Playground, people: People, receiver: Receiver) -> None:
    _, reply = _answered_mention(pg, people)
    pg.click(people.ana, people.general, reply["ts"], {"action_id": "open_form", "block_id": "tools", "type": "button"})
    [opened] = wait_until(lambda: pg.views(people.ana))
    assert pg.close_view(people.ben, opened["id"])["error"] == "view_not_found"
    assert pg.close_view(people.ana, opened["id"]) == {"ok": True}
    assert pg.views(people.ana) == []


def test_a_feedback_button_click_reports_the_chosen_half(pg: Playground, people: People, receiver: Receiver) -> None:
    thread_ts, reply = _answered_mention(pg, people)
    action = {"action_id": "vote", "block_id": "feedback", "value": "down", "type": "feedback_buttons"}
    assert pg.click(people.ben, people.general, reply["ts"], action) == {"ok": True}
    [body] = receiver.of("block_actions")
    [clicked] = body["actions"]
    assert (clicked["type"], clicked["value"], clicked["text"]["text"]) == ("feedback_buttons", "down", "👎")
    [thanks] = wait_until(lambda: pg.thread(people.ben, people.general, thread_ts)["ephemerals"])
    assert thanks["text"] == "down"
    assert pg.thread(people.ana, people.general, thread_ts)["ephemerals"] == []
    missing = {"action_id": "nope", "type": "button"}
    assert pg.click(people.ben, people.general, reply["ts"], missing)["error"] == "action_not_found"


def test_reacting_toggles_and_delivers_added_then_removed(pg: Playground, people: People, receiver: Receiver) -> None:
    ts = pg.send(people.ana, people.general, "ship it")["ts"]
    assert pg.react(people.ben, people.general, ts, ":+1:") == {"ok": True, "added": True}
    [top] = pg.history(people.ana, people.general)["messages"]
    assert top["reactions"] == [{"name": "+1", "users": [people.ben], "count": 1}]
    [added] = wait_until(lambda: receiver.of("reaction_added"))
    assert (added["user"], added["reaction"], added["item"], added["item_user"]) == (
        people.ben,
        "+1",
        {"type": "message", "channel": people.general, "ts": ts},
        people.ana,
    )

    assert pg.react(people.ben, people.general, ts, "+1") == {"ok": True, "added": False}
    [removed] = wait_until(lambda: receiver.of("reaction_removed"))
    assert (removed["user"], removed["reaction"]) == (people.ben, "+1")
    assert "reactions" not in pg.history(people.ana, people.general)["messages"][0]
    assert pg.react(people.ben, people.general, ts, "not an emoji!")["error"] == "invalid_name"
    assert pg.react(people.ben, people.general, "1.000001", "tada")["error"] == "message_not_found"


def test_views_push_and_update_keep_slacks_stack_and_hashes(pg: Playground, people: People) -> None:
    web = WebClient(token=pg.slack.bot_token, base_url=pg.slack.api_url)
    events = pg.slack.events
    opened = web.views_open(trigger_id=events.trigger(people.cleo), view=FORM)["view"]
    assert (opened["root_view_id"], opened["previous_view_id"]) == (opened["id"], None)
    with pytest.raises(SlackApiError) as unknown:
        web.views_open(trigger_id="123.456.abc", view=FORM)
    assert unknown.value.response["error"] == "invalid_trigger_id"

    pushed = web.views_push(trigger_id=events.trigger(people.cleo), view={**FORM, "callback_id": "second"})["view"]
    assert (pushed["root_view_id"], pushed["previous_view_id"]) == (opened["id"], opened["id"])
    with pytest.raises(SlackApiError) as stale:
        web.views_update(view_id=opened["id"], hash="0.stale", view=FORM)
    assert stale.value.response["error"] == "hash_conflict"
    updated = web.views_update(view_id=opened["id"], hash=opened["hash"], view={**FORM, "callback_id": "first"})["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert [(v["id"], v["view"]["callback_id"]) for v in pg.views(people.cleo)] == [
        (opened["id"], "first"),
        (pushed["id"], "second"),
    ]

    # Closing the pushed view goes back to the first; closing that one closes the lot.
    assert pg.close_view(people.cleo, pushed["id"]) == {"ok": True}
    assert [v["id"] for v in pg.views(people.cleo)] == [opened["id"]]
    pg.close_view(people.cleo, opened["id"])
    assert pg.views(people.cleo) == []


# -- hooks and persistence --------------------------------------------------------------------


def test_status_and_train_use_the_hooks_given(tmp_path: Path) -> None:
    bare = Playground(None, signing_secret=SECRET)
    assert bare.status() == {} and bare.train()["error"] == "not_available"
    hooked = Playground(None, signing_secret=SECRET, status=lambda: {"model": "tiny"}, train=lambda: {"ok": True})
    assert (hooked.status(), hooked.train()) == ({"model": "tiny"}, {"ok": True})


def test_without_ember_connected_messages_are_kept_and_actions_say_so(pg: Playground, people: People) -> None:
    assert pg.send(people.ana, people.general, "@ember anyone?")["ok"] is True
    assert pg.send(people.ana, people.general, "/ember help")["error"] == "not_connected"
    assert texts(pg.history(people.ana, people.general)["messages"]) == [f"<@{pg.slack.workspace.bot_user_id}> anyone?"]


def test_a_restart_on_the_same_data_keeps_the_channels_and_messages(tmp_path: Path) -> None:
    first = Playground(tmp_path / "data", signing_secret=SECRET).start()
    try:
        ana = next(p["id"] for p in first.people() if p["name"] == "ana")
        before = first.directory(ana)["channels"]
        general = before[0]["id"]
        ts = first.send(ana, general, "remember me")["ts"]
        first.send(ana, general, "and this reply", thread_ts=ts)
        delivered = {first.slack.events.envelope({"event_ts": ts})["event_id"] for _ in range(3)}
    finally:
        first.stop()
    assert (tmp_path / "data" / "playground.db").is_file()

    second = Playground(tmp_path / "data", signing_secret=SECRET).start()
    try:
        assert [p["name"] for p in second.people()] == ["ana", "ben", "cleo"]
        assert second.directory(ana)["channels"] == before
        assert texts(second.history(ana, general)["messages"]) == ["remember me"]
        assert texts(second.thread(ana, general, ts)["replies"]) == ["and this reply"]
        later = second.send(ana, general, "after the restart")["ts"]
        assert later > ts
        # Ember remembers the event ids it took: one handed out again would be taken for a redelivery.
        assert second.slack.events.envelope({"event_ts": later})["event_id"] not in delivered
    finally:
        second.stop()
