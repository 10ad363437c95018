"""PlaygroundWeb over a real HTTP server (waitress, as Ember mounts it), in front of a recording stand-in.

The stand-in only records calls and returns canned answers: the real `playground.app.Playground` has
its own tests. What is checked here is the web layer: routes, status codes, static files, the event
stream.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from waitress.server import create_server

from playground.web import PlaygroundWeb


class RecordingPlaygroundStandIn:
    """Stands in for playground.app.Playground: records each call, answers with canned dicts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.revision = 0
        self._changed = threading.Condition()
        self.fail_with: BaseException | None = None

    def bump(self) -> None:
        with self._changed:
            self.revision += 1
            self._changed.notify_all()

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.fail_with is not None:
            raise self.fail_with

    def directory(self, user: str) -> dict[str, Any]:
        self._record("directory", user)
        return {
            "me": {"id": user, "name": "ana", "real_name": "Ana Lima"},
            "people": self.people(),
            "bot": {"id": "UBOT", "name": "ember"},
            "channels": [{"id": "C1", "name": "general", "kind": "public", "label": "general"}],
        }

    def people(self) -> list[dict[str, str]]:
        return [{"id": "U1", "name": "ana", "real_name": "Ana Lima"}]

    def history(self, user: str, channel: str) -> dict[str, Any]:
        self._record("history", user, channel)
        return {"channel": {"id": channel}, "messages": [{"ts": "1.000001", "text": "hi"}], "ephemerals": []}

    def thread(self, user: str, channel: str, ts: str) -> dict[str, Any]:
        self._record("thread", user, channel, ts)
        return {"parent": {"ts": ts}, "replies": [], "ephemerals": []}

    def views(self, user: str) -> list[dict[str, Any]]:
        self._record("views", user)
        return [{"id": "V1", "view": {"type": "modal", "title": {"type": "plain_text", "text": "Hi"}}}]

    def status(self) -> dict[str, Any]:
        self._record("status")
        return {"model_version": "base", "queue_depth": 0, "last_training": None, "training": {"running": False}}

    def train(self) -> dict[str, Any]:
        self._record("train")
        return {"ok": True}

    def send(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
        self._record("send", user, channel, text, thread_ts)
        if not text:
            return {"ok": False, "error": "no_text", "message": "Type a message first."}
        return {"ok": True}

    def click(self, user: str, channel: str, message_ts: str, action: dict[str, Any]) -> dict[str, Any]:
        self._record("click", user, channel, message_ts, action)
        return {"ok": True}

    def submit(self, user: str, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
        self._record("submit", user, view_id, values)
        return {"ok": False, "errors": {"b1": "Please write something"}}

    def close_view(self, user: str, view_id: str) -> dict[str, Any]:
        self._record("close_view", user, view_id)
        return {"ok": True}

    def react(self, user: str, channel: str, ts: str, name: str) -> dict[str, Any]:
        self._record("react", user, channel, ts, name)
        return {"ok": True}

    def wait(self, seen: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.revision != seen, timeout)
            return self.revision


class Served:
    def __init__(self, web: PlaygroundWeb, stand_in: RecordingPlaygroundStandIn, port: int) -> None:
        self.web, self.stand_in, self.port = web, stand_in, port

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post_json(self, path: str, payload: Any) -> tuple[int, Any]:
        raw = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        status, _, body = self.request("POST", path, raw, {"Content-Type": "application/json"})
        return status, json.loads(body)


@pytest.fixture
def served() -> Iterator[Served]:
    stand_in = RecordingPlaygroundStandIn()
    web = PlaygroundWeb(stand_in, max_body=4096, keepalive_s=0.3, tick_s=0.1)
    server: Any = create_server(web, host="127.0.0.1", port=0, threads=6)
    stopping = threading.Event()

    def serve() -> None:  # short slices, as bot.server.HttpServer does
        while not stopping.is_set():
            server.asyncore.loop(timeout=0.1, map=server._map, count=1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Served(web, stand_in, int(server.effective_port))
    finally:
        web.close()
        stopping.set()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown()
        server.asyncore.close_all(server._map)


# --- the page and its files -------------------------------------------------------------------


def test_index_is_served_at_the_root(served: Served) -> None:
    status, headers, body = served.request("GET", "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b'src="/static/app.js"' in body and b'href="/static/style.css"' in body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript"), ("style.css", "text/css"), ("index.html", "text/html")],
)
def test_static_files_have_their_content_types(served: Served, name: str, content_type: str) -> None:
    status, headers, body = served.request("GET", f"/static/{name}")
    assert status == 200
    assert headers["content-type"].split(";")[0] == content_type
    assert int(headers["content-length"]) == len(body) > 0


def test_head_sends_headers_only(served: Served) -> None:
    status, headers, body = served.request("HEAD", "/static/style.css")
    assert status == 200 and body == b""
    assert headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/static/../web.py",
        "/static/%2e%2e/web.py",
        "/static/..%2fweb.py",
        "/static/..",
        "/static/.hidden",
        "/static/",
        "/static/missing.js",
        "/static/sub/app.js",
        "/static//etc/passwd",
        "/favicon.ico",
        "/playground",
    ],
)
def test_other_paths_are_404_and_nothing_outside_static_is_served(served: Served, path: str) -> None:
    status, headers, body = served.request("GET", path)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["ok"] is False
    assert b"PlaygroundWeb" not in body


def test_writing_to_the_page_is_405(served: Served) -> None:
    status, headers, _ = served.request("POST", "/", b"{}")
    assert status == 405 and "GET" in headers["allow"]


# --- reads ------------------------------------------------------------------------------------


def test_reads_pass_their_query_to_the_playground(served: Served) -> None:
    calls = served.stand_in.calls
    status, body = served.get_json("/playground/api/directory?user=U1")
    assert status == 200 and body["channels"][0]["name"] == "general"
    assert served.get_json("/playground/api/people") == (200, served.stand_in.people())
    status, body = served.get_json("/playground/api/history?user=U1&channel=C1")
    assert status == 200 and body["messages"][0]["text"] == "hi"
    status, body = served.get_json("/playground/api/thread?user=U1&channel=C1&ts=1.000001")
    assert status == 200 and body["parent"]["ts"] == "1.000001"
    status, body = served.get_json("/playground/api/views?user=U1")
    assert status == 200 and body[0]["id"] == "V1"
    status, body = served.get_json("/playground/api/status")
    assert status == 200 and body["model_version"] == "base"
    assert calls == [
        ("directory", ("U1",)),
        ("history", ("U1", "C1")),
        ("thread", ("U1", "C1", "1.000001")),
        ("views", ("U1",)),
        ("status", ()),
    ]


def test_query_values_are_decoded(served: Served) -> None:
    served.get_json("/playground/api/history?user=U%201&channel=C%2B1")
    assert served.stand_in.calls[-1] == ("history", ("U 1", "C+1"))


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/playground/api/directory", "user"),
        ("/playground/api/history?user=U1", "channel"),
        ("/playground/api/thread?user=U1&channel=C1", "ts"),
        ("/playground/api/views", "user"),
    ],
)
def test_a_missing_query_field_is_400_naming_it(served: Served, path: str, field: str) -> None:
    status, body = served.get_json(path)
    assert status == 400
    assert body["error"] == "missing_field" and body["field"] == field and field in body["message"]
    assert served.stand_in.calls == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (PermissionError("not a member of C9"), 403, "forbidden"),
        (KeyError("C9"), 404, "not_found"),
        (LookupError("no such thread"), 404, "not_found"),
        (ValueError("bad ts"), 400, "invalid_arguments"),
    ],
)
def test_playground_refusals_become_4xx(served: Served, error: Exception, status: int, code: str) -> None:
    served.stand_in.fail_with = error
    got, body = served.get_json("/playground/api/history?user=U1&channel=C9")
    assert (got, body["error"]) == (status, code)
    assert body["ok"] is False and body["message"]
    got, body = served.post_json("/playground/api/send", {"user": "U1", "channel": "C9", "text": "x"})
    assert (got, body["error"]) == (status, code)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"ok": False, "error": "channel_not_found", "message": "You can't see it."}, 404),
        ({"ok": False, "error": "user_not_found", "message": "No such person."}, 404),
        ({"ok": False, "error": "not_allowed", "message": "No."}, 403),
        ({"ok": False, "error": "odd", "message": "Hm."}, 400),
    ],
)
def test_a_read_the_playground_refuses_is_4xx_with_its_answer(
    served: Served, monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any], status: int
) -> None:
    monkeypatch.setattr(served.stand_in, "history", lambda user, channel: answer)
    assert served.get_json("/playground/api/history?user=U1&channel=C9") == (status, answer)
    monkeypatch.setattr(served.stand_in, "status", lambda: {"ok": False, "error": "internal_error"})
    assert served.get_json("/playground/api/status") == (200, {"ok": False, "error": "internal_error"})


def test_reads_are_get_only(served: Served) -> None:
    status, headers, _ = served.request("POST", "/playground/api/status", b"{}")
    assert status == 405 and headers["allow"] == "GET"


def test_an_unknown_api_method_is_404(served: Served) -> None:
    assert served.get_json("/playground/api/nope")[0] == 404
    assert served.post_json("/playground/api/nope", {})[0] == 404


# --- writes -----------------------------------------------------------------------------------


def test_writes_pass_their_body_to_the_playground(served: Served) -> None:
    calls = served.stand_in.calls
    action = {"action_id": "ember_feedback", "block_id": "b", "value": "up:1.1", "type": "feedback_buttons"}
    values = {"b1": {"a1": {"type": "plain_text_input", "value": "better"}}}
    sent = served.post_json("/playground/api/send", {"user": "U1", "channel": "C1", "text": "hi"})
    assert sent == (200, {"ok": True})
    served.post_json("/playground/api/send", {"user": "U1", "channel": "C1", "text": "yo", "thread_ts": "1.000001"})
    served.post_json("/playground/api/send", {"user": "U1", "channel": "C1", "text": "/ember help", "thread_ts": None})
    served.post_json("/playground/api/click", {"user": "U1", "channel": "C1", "message_ts": "2.0", "action": action})
    status, body = served.post_json("/playground/api/submit", {"user": "U1", "view_id": "V1", "values": values})
    assert (status, body) == (200, {"ok": False, "errors": {"b1": "Please write something"}})
    served.post_json("/playground/api/close_view", {"user": "U1", "view_id": "V1"})
    served.post_json("/playground/api/react", {"user": "U1", "channel": "C1", "ts": "2.0", "name": "+1"})
    assert served.post_json("/playground/api/train", {}) == (200, {"ok": True})
    assert calls == [
        ("send", ("U1", "C1", "hi", None)),
        ("send", ("U1", "C1", "yo", "1.000001")),
        ("send", ("U1", "C1", "/ember help", None)),
        ("click", ("U1", "C1", "2.0", action)),
        ("submit", ("U1", "V1", values)),
        ("close_view", ("U1", "V1")),
        ("react", ("U1", "C1", "2.0", "+1")),
        ("train", ()),
    ]


def test_train_takes_an_empty_body(served: Served) -> None:
    status, _, body = served.request("POST", "/playground/api/train")
    assert status == 200 and json.loads(body) == {"ok": True}


def test_a_refused_send_is_passed_back_as_is(served: Served) -> None:
    status, body = served.post_json("/playground/api/send", {"user": "U1", "channel": "C1", "text": ""})
    assert status == 200
    assert body == {"ok": False, "error": "no_text", "message": "Type a message first."}


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400(served: Served, raw: str) -> None:
    status, body = served.post_json("/playground/api/send", raw.encode("latin-1"))
    assert status == 400 and body["error"] == "invalid_json"
    assert served.stand_in.calls == []


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/playground/api/send", {"channel": "C1", "text": "hi"}, "user"),
        ("/playground/api/send", {"user": "U1", "text": "hi"}, "channel"),
        ("/playground/api/send", {"user": "U1", "channel": "C1"}, "text"),
        ("/playground/api/click", {"user": "U1", "channel": "C1", "action": {}}, "message_ts"),
        ("/playground/api/click", {"user": "U1", "channel": "C1", "message_ts": "1.0"}, "action"),
        ("/playground/api/submit", {"user": "U1", "values": {}}, "view_id"),
        ("/playground/api/submit", {"user": "U1", "view_id": "V1"}, "values"),
        ("/playground/api/close_view", {"user": "U1"}, "view_id"),
        ("/playground/api/react", {"user": "U1", "channel": "C1", "ts": "1.0"}, "name"),
    ],
)
def test_a_missing_body_field_is_400_naming_it(served: Served, path: str, payload: dict[str, Any], field: str) -> None:
    status, body = served.post_json(path, payload)
    assert status == 400
    assert body["error"] == "missing_field" and body["field"] == field and field in body["message"]
    assert served.stand_in.calls == []


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/playground/api/send", {"user": "U1", "channel": "C1", "text": 5}, "text"),
        ("/playground/api/send", {"user": "U1", "channel": "C1", "text": "x", "thread_ts": 1.5}, "thread_ts"),
        ("/playground/api/click", {"user": "U1", "channel": "C1", "message_ts": "1.0", "action": "up"}, "action"),
        ("/playground/api/submit", {"user": "U1", "view_id": "V1", "values": []}, "values"),
        ("/playground/api/react", {"user": None, "channel": "C1", "ts": "1.0", "name": "+1"}, "user"),
    ],
)
def test_a_mistyped_body_field_is_400_naming_it(served: Served, path: str, payload: dict[str, Any], field: str) -> None:
    status, body = served.post_json(path, payload)
    assert status == 400 and body["error"] == "invalid_field" and body["field"] == field


def test_a_body_over_the_limit_is_413(served: Served) -> None:
    payload = {"user": "U1", "channel": "C1", "text": "x" * 5000}
    status, body = served.post_json("/playground/api/send", payload)
    assert status == 413 and body["error"] == "body_too_large"
    assert served.stand_in.calls == []


def test_writes_are_post_only(served: Served) -> None:
    status, body = served.get_json("/playground/api/send?user=U1&channel=C1&text=hi")
    assert status == 405 and body["error"] == "method_not_allowed"
    assert served.stand_in.calls == []


# --- the event stream -------------------------------------------------------------------------


def _open_events(served: Served) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    conn.request("GET", "/playground/events")
    response = conn.getresponse()
    return conn, response


def _next_event(response: http.client.HTTPResponse) -> list[str]:
    """The lines of the next event or comment (up to its blank line)."""
    lines: list[str] = []
    while True:
        line = response.readline().decode()
        assert line, "the stream ended"
        if line == "\n":
            if lines:
                return lines
            continue
        lines.append(line.rstrip("\n"))


def _next_change(response: http.client.HTTPResponse) -> dict[str, Any]:
    while True:
        lines = _next_event(response)
        if lines[0] == "event: change":
            assert lines[1].startswith("data: ")
            return dict(json.loads(lines[1][len("data: ") :]))


def test_events_stream_a_change_when_the_revision_moves(served: Served) -> None:
    conn, response = _open_events(served)
    try:
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        assert response.getheader("Cache-Control") == "no-cache"
        assert _next_event(response) == ["retry: 2000"]
        assert _next_change(response) == {"revision": 0}  # at once: the page refreshes on (re)connecting
        started = time.monotonic()
        threading.Timer(0.2, served.stand_in.bump).start()
        assert _next_change(response) == {"revision": 1}
        assert time.monotonic() - started < 2
        served.stand_in.bump()
        served.stand_in.bump()
        assert _next_change(response)["revision"] in (2, 3)  # coalesced or not
    finally:
        conn.close()


def test_events_send_keepalive_comments_while_idle(served: Served) -> None:
    conn, response = _open_events(served)
    try:
        _next_change(response)
        assert _next_event(response) == [": keepalive"]
    finally:
        conn.close()


def test_close_ends_the_open_streams_and_refuses_new_ones(served: Served) -> None:
    conn, response = _open_events(served)
    try:
        _next_change(response)
        served.web.close()
        started = time.monotonic()
        rest = response.read()  # returns once the stream ends
        assert time.monotonic() - started < 2
        assert b"event: change" not in rest
    finally:
        conn.close()
    status, _, body = served.request("GET", "/playground/events")
    assert status == 503 and json.loads(body)["error"] == "stopping"
    assert served.get_json("/playground/api/status")[0] == 200  # the rest keeps answering


def test_a_client_that_goes_away_frees_its_stream(served: Served) -> None:
    for _ in range(8):  # more streams than the server has threads: each must end when its client leaves
        conn, response = _open_events(served)
        _next_change(response)
        conn.close()
    time.sleep(0.5)  # a keepalive after the close finds the client gone
    assert served.get_json("/playground/api/status")[0] == 200
