"""Thousands of correctly signed but malformed requests, mutated from the real ones Slack sends: Ember
answers none of them with a 5xx and logs no traceback, and a normal mention is answered afterwards.

Slack treats every non-2xx as a failed delivery, retries it, and turns off an app's event
subscriptions when most deliveries fail; a 500 from a payload Ember did not expect costs the team
its bot. The run is bounded to a minute.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.slack.digest_commands import SUMMARIZE_SHORTCUT
from handlers.slack.feedback import CORRECTION_BLOCK, CORRECTION_INPUT, FEEDBACK_ACTION, SuggestTarget, suggest_modal
from playground import LocalSlack, SlackClient
from tests.conftest import Bots
from tests.support.scenario import answered

BUDGET_SECONDS = 60.0
JSON = "application/json"

# Any JSON value, small: what a mutation puts where a field was.
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document, the document itself included."""
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from paths(child, (*prefix, index))


def mutate(document: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    if not path:
        return value if how == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last]["unexpected_field"] = value
    else:
        parent[last] = value
    return document


@st.composite
def mutations(draw: st.DrawFn, seeds: list[tuple[str, Any]]) -> tuple[str, Any]:
    kind, seed = draw(st.sampled_from(seeds))
    document = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths(document))
        path = draw(st.sampled_from(places))
        how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        value = draw(st.text(max_size=12) if kind == "command" else values)
        if kind == "command" and len(path) != 1:
            continue  # a form is flat: only its fields' values change
        document = mutate(document, path, how, value)
    return kind, document


def send(client: SlackClient, kind: str, document: Any) -> int:
    if kind == "command":
        fields = document if isinstance(document, dict) else {}
        return client.send_form({str(k): str(v) for k, v in fields.items()}).status_code
    if kind == "interaction":
        return client.send_form({"payload": json.dumps(document)}).status_code
    return client.send_raw(json.dumps(document).encode(), JSON).status_code


def seeds(slack: LocalSlack, client: SlackClient) -> list[tuple[str, Any]]:
    """Real payloads of every kind Ember handles, around one answered mention."""
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    dm = slack.add_channel("alice-dm", kind="im", user=alice)
    mention = slack.mention(channel, alice, "What is the VPN host?")
    assert client.send_event(mention).status_code == 200
    [answer] = answered(slack, channel, mention["event"]["ts"])
    target = SuggestTarget(channel, answer["ts"], mention["event"]["ts"])
    modal = {**suggest_modal(target, question="What is the VPN host?"), "id": "V0001"}
    values = {CORRECTION_BLOCK: {CORRECTION_INPUT: {"type": "plain_text_input", "value": "vpn.acme.internal"}}}
    return [
        ("event", mention),
        ("event", slack.user_message(dm, alice, "hello in a DM")),
        ("event", slack.user_message(channel, alice, "just chatting")),
        ("event", slack.react(channel, answer["ts"], alice, "+1")),
        ("event", {"type": "url_verification", "token": "x", "challenge": "abc123"}),
        ("command", slack.command_payload(channel, alice, "ask what is the VPN host?")),
        ("command", slack.command_payload(channel, alice, "help")),
        ("interaction", slack.block_action(channel, alice, answer["ts"], FEEDBACK_ACTION, value="up")),
        ("interaction", slack.events.view_submission(alice, modal, values)),
        ("interaction", slack.message_shortcut(channel, alice, mention["event"]["ts"], SUMMARIZE_SHORTCUT)),
    ]


def test_signed_malformed_requests_never_get_a_5xx(
    bots: Bots, slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    bots.start()
    client = bots.client
    real = seeds(slack, client)
    statuses: Counter[tuple[str, int]] = Counter()
    deadline = time.monotonic() + BUDGET_SECONDS

    @settings(max_examples=3000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutations(real))
    def post(request: tuple[str, Any]) -> None:
        if time.monotonic() > deadline:
            return
        kind, document = request
        status = send(client, kind, document)
        statuses[kind, status] += 1
        assert status < 500, (kind, document)

    with caplog.at_level(logging.WARNING):
        post()
    print(
        f"{sum(statuses.values())} signed mutations:",
        ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(statuses.items())),
    )
    assert not [k for (k, s) in statuses if k == "event" and s != 200 and s != 400], "events get 200 or 400"
    assert sum(statuses.values()) >= 500, "too few requests to say anything"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [f"{r.name}: {r.getMessage()}" for r in tracebacks[:5]]

    # And Ember still answers.
    channel, bob = slack.add_channel("random"), slack.add_user("bob")
    mention = slack.mention(channel, bob, "Are you still there?")
    assert client.send_event(mention).status_code == 200
    answered(slack, channel, mention["event"]["ts"], timeout=120)


def test_each_kind_of_malformed_request_gets_the_status_and_reason_slack_would_expect(
    bots: Bots, slack: LocalSlack, caplog: pytest.LogCaptureFixture
) -> None:
    bots.start()
    client = bots.client
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    mention = slack.mention(channel, alice, "What is the VPN host? secret xoxb-123-456-abcdef")

    def event_with(**changes: Any) -> dict[str, Any]:
        envelope = copy.deepcopy(mention)
        envelope["event"].update(changes)
        return envelope

    cases = [
        ({**mention, "event": None}, 400, "event must be an object"),
        ({**mention, "event": [1, 2]}, 400, "event must be an object"),
        (event_with(user=42), 400, "event.user must be a string, not a number"),
        (event_with(channel=None), 400, "event.channel must be a string, not null"),
        ({**mention, "authorizations": {"team_id": "T1"}}, 400, "authorizations must be a list, not an object"),
        ({**mention, "event": {"type": "team_join", "user": {"id": "U1"}}}, 200, ""),
        ({**mention, "event": {"type": "something_new_from_slack"}}, 200, ""),
        ({"type": "not_a_slack_request"}, 400, "unknown request type 'not_a_slack_request'"),
    ]
    for envelope, status, reason in cases:
        response = client.send_raw(json.dumps(envelope).encode(), JSON)
        assert (response.status_code, response.text.strip()) == (status, reason), envelope
    interaction = client.send_form({"payload": json.dumps({"type": "block_actions", "user": 7, "actions": []})})
    assert (interaction.status_code, interaction.text.strip()) == (400, "user must be an object, not a number")
    assert client.send_form({"payload": "{not json"}).status_code == 400
    command = slack.command_payload(channel, alice, "help")
    del command["user_id"]
    assert client.send_form(command).text.strip() == "a slash command without user_id"
    command = slack.command_payload(channel, alice, "ask what is the VPN host?")
    del command["response_url"]
    assert client.send_form(command).text.strip() == "a slash command without response_url"
    # A modal with two conversation pickers that each ask for a response_url.
    modal = {**suggest_modal(SuggestTarget(channel, "1.2", "1.1"), question="What is the VPN host?"), "id": "V0002"}
    values = {CORRECTION_BLOCK: {CORRECTION_INPUT: {"type": "plain_text_input", "value": "vpn.acme.internal"}}}
    submission = slack.events.view_submission(alice, modal, values)
    url = {"response_url": f"{slack.api_url}/response/1", "channel_id": channel, "block_id": "b", "action_id": "a"}
    submission["response_urls"] = [url, url]
    assert client.send_form({"payload": json.dumps(submission)}).status_code == 200

    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    refusals = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
    assert "refused a signed request from Slack: event must be an object" in refusals
    assert not any("xoxb" in line or "VPN" in line for line in refusals), "the log holds no payload"
    assert not slack.messages(channel, mention["event"]["ts"])[1:], "nothing malformed was answered"
