"""Ember's App Home tab, as a person opens it in Slack: what Ember serves and learned lately, their
digests with a Turn off button, what it keeps of them and a Forget me behind a confirmation."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bot.settings import Settings
from db.digests import subscriptions
from db.schema import TrainingRun, utcnow
from handlers.slack.home import HOME_DIGEST_EDIT, HOME_DIGEST_OFF, HOME_FORGET, SCHEDULE_BLOCK, SCHEDULE_INPUT
from models import registry
from playground import LocalSlack
from tests.conftest import Bots
from tests.support.scenario import answered, wait_for


def text_of(view: dict[str, Any] | None) -> str:
    """Everything a person reads on the tab."""
    assert view is not None, "no home tab published"
    parts = []
    for block in view["blocks"]:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text["text"])
        for element in block.get("elements") or []:
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


def open_home(bots: Bots, slack: LocalSlack, user: str) -> str:
    published = len(slack.calls_to("views.publish"))
    assert bots.client.send_event(slack.app_home_opened(user)).status_code == 200
    slack.wait_for("views.publish", lambda call: call.args.get("user_id") == user, count=published + 1)
    return text_of(slack.home(user))


def button(view: dict[str, Any] | None, action_id: str) -> dict[str, Any]:
    assert view is not None
    for block in view["blocks"]:
        for element in [block.get("accessory"), *(block.get("elements") or [])]:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button on the tab")


def test_the_home_tab_shows_the_model_the_runs_and_what_is_kept_and_follows_a_promotion(
    bots: Bots, slack: LocalSlack, bot_settings: Settings, tiny_model_dir: Path
) -> None:
    bot = bots.start()
    channel, alice = slack.add_channel("general"), slack.add_user("alice")
    shown = open_home(bots, slack, alice)
    assert f"*Model:* `{bot.engine.version}`" in shown
    assert "*Last nightly runs*\nNone yet." in shown
    assert "0 questions with my answers, 0 votes, 0 memories" in shown

    mention = slack.mention(channel, alice, "What is the VPN host?")
    bots.client.send_event(mention)
    answered(slack, channel, mention["event"]["ts"])
    assert "1 question with my answers" in open_home(bots, slack, alice)

    # A nightly run promotes a fine-tune; the running bot swaps to it and the open tab follows.
    weights = registry.versions_dir(bot_settings.data_dir) / "tiny-llama-ft1"
    shutil.copytree(tiny_model_dir, weights)
    with bot.db.session() as session:
        base = bot.engine.version
        registry.add_candidate(session, version="tiny-llama-ft1", path=weights, parent=base, metrics={})
        registry.promote(session, version="tiny-llama-ft1")
        session.add(
            TrainingRun(
                status="promoted",
                base_version=base,
                candidate_version="tiny-llama-ft1",
                examples=12,
                desirable=9,
                undesirable=3,
                finished_at=utcnow(),
            )
        )
    published = len(slack.calls_to("views.publish"))
    bot.sync_model()
    slack.wait_for("views.publish", count=published + 1)
    shown = text_of(slack.home(alice))
    assert "*Model:* `tiny-llama-ft1`, promoted" in shown
    assert "12 examples (9 good, 3 bad); promoted `tiny-llama-ft1`" in shown


def test_a_digest_is_edited_and_turned_off_from_the_home_tab_and_forget_me_asks_first(
    bots: Bots, slack: LocalSlack
) -> None:
    bot = bots.start()
    channel, alice, bob = slack.add_channel("general"), slack.add_user("alice"), slack.add_user("bob")
    assert "*Your digests*\nNone." in open_home(bots, slack, alice)
    for user in (alice, bob):
        response = bots.client.send_form(slack.command_payload(channel, user, "digest me daily 09:00"))
        assert response.status_code == 200
    wait_for(lambda: len(subs(bot)) == 2, what="both recaps stored")
    # Alice's open tab follows her subscription without being opened again.
    wait_for(lambda: "Your personal recap: daily 09:00" in text_of(slack.home(alice)), what="the tab refreshed")
    assert slack.home(bob) is None, "bob never opened his"

    # Edit: a modal with the schedule as she wrote it; a bad one is refused in the modal.
    assert bots.client.send_interaction(slack.home_action(alice, HOME_DIGEST_EDIT)).status_code == 200
    [opened] = slack.wait_for("views.open")
    modal = opened.response["view"]
    field = modal["blocks"][1]["element"]
    assert field["initial_value"] == "daily 09:00"

    def submit(schedule: str) -> Any:
        values = {SCHEDULE_BLOCK: {SCHEDULE_INPUT: {"type": "plain_text_input", "value": schedule}}}
        return bots.client.send_interaction(slack.events.view_submission(alice, modal, values))

    refused = submit("hourly")
    assert refused.json()["response_action"] == "errors"
    assert "I don't know the cadence `hourly`" in refused.json()["errors"][SCHEDULE_BLOCK]
    assert [s.cron for s in subs(bot) if s.user_id == alice] == ["0 9 * * *"], "nothing changed"
    published = len(slack.calls_to("views.publish"))
    assert submit("weekly fri 17:00").status_code == 200
    slack.wait_for("views.publish", count=published + 1)
    shown = text_of(slack.home(alice))
    assert "Your personal recap is now weekly fri 17:00" in shown
    assert "Your personal recap: weekly fri 17:00" in shown
    assert [s.cron for s in subs(bot) if s.user_id == alice] == ["0 17 * * fri"]

    off = button(slack.home(alice), HOME_DIGEST_OFF)
    assert off["confirm"]["title"]["text"] == "Turn this digest off?"
    published = len(slack.calls_to("views.publish"))
    assert bots.client.send_interaction(slack.home_action(alice, HOME_DIGEST_OFF)).status_code == 200
    slack.wait_for("views.publish", count=published + 1)
    shown = text_of(slack.home(alice))
    assert "Stopped your personal recap." in shown and "weekly fri 17:00 (" not in shown
    assert [s.user_id for s in subs(bot)] == [bob], "only alice's recap stopped"

    # A forged click naming bob's recap stops nothing.
    forged = slack.home_action(alice, HOME_FORGET)
    forged["actions"][0].update(action_id=HOME_DIGEST_OFF, value=str(subs(bot)[0].id))
    bots.client.send_interaction(forged)
    slack.wait_for("views.publish", count=published + 2)
    assert [s.user_id for s in subs(bot)] == [bob]

    # Forget me: Slack's own dialog asks first, and says what goes.
    mention = slack.mention(channel, alice, "What is the VPN host?")
    bots.client.send_event(mention)
    answered(slack, channel, mention["event"]["ts"])
    assert "1 question with my answers" in open_home(bots, slack, alice)
    forget = button(slack.home(alice), HOME_FORGET)
    assert forget["confirm"]["title"]["text"] == "Forget everything?"
    assert "cannot be undone" in forget["confirm"]["text"]["text"]
    published = len(slack.calls_to("views.publish"))
    bots.client.send_interaction(slack.home_action(alice, HOME_FORGET))
    slack.wait_for("views.publish", count=published + 1)
    shown = text_of(slack.home(alice))
    assert "Done: I removed 1 question with my answers" in shown
    assert "0 questions with my answers, 0 votes, 0 memories" in shown


def test_the_messages_tab_publishes_nothing(bots: Bots, slack: LocalSlack) -> None:
    bots.start()
    alice = slack.add_user("alice")
    envelope = slack.app_home_opened(alice)
    envelope["event"]["tab"] = "messages"
    assert bots.client.send_event(envelope).status_code == 200
    # A mention answered afterwards shows the event was handled, and no home was published for it.
    channel = slack.add_channel("general")
    mention = slack.mention(channel, alice, "Still there?")
    bots.client.send_event(mention)
    answered(slack, channel, mention["event"]["ts"])
    assert slack.home(alice) is None


def subs(bot: Any) -> list[Any]:
    with bot.db.session() as session:
        return subscriptions(session)
