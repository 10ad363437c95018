"""Scheduled digests, personal recaps, catch-ups and thread summaries, end to end: a real Bolt app over
HTTP, real APScheduler triggers, a real SQLite file, and the Slack stand-in's paginated history."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from transformers import PreTrainedTokenizerBase

from bot.runtime import Ember
from bot.settings import Settings
from handlers.slack.digest_commands import SUMMARIZE_SHORTCUT
from handlers.slack.digests import Outcome
from playground import LocalSlack, SlackClient
from tests.conftest import SIGNING_SECRET
from tests.support.digests import INVENTED, CitingEngine
from tests.support.scenario import wait_for

LINK = re.compile(r"<(http[^|>]+)\|\[\d+\]>")


class DigestBots:
    """Ember processes on one data directory and one citing model, as `ember run` starts them."""

    def __init__(self, settings: Settings, engine: CitingEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.running: list[Ember] = []

    def start(self, **changes: object) -> Ember:
        settings = self.settings.model_copy(update={"scheduler": True, **changes})
        bot = Ember.build(settings, engine=self.engine)
        bot.start()
        self.running.append(bot)
        return bot

    def stop(self, bot: Ember) -> None:
        bot.stop()
        self.running.remove(bot)

    def client(self, bot: Ember) -> SlackClient:
        return SlackClient(f"{bot.url}/slack/events", SIGNING_SECRET)


@pytest.fixture()
def digest_bots(bot_settings: Settings, tokenizer: PreTrainedTokenizerBase) -> Iterator[DigestBots]:
    runner = DigestBots(bot_settings, CitingEngine(tokenizer, window=2048))
    yield runner
    for bot in list(runner.running):
        runner.stop(bot)


def command(digest_bots: DigestBots, bot: Ember, slack: LocalSlack, channel: str, user: str, text: str) -> str:
    response = digest_bots.client(bot).send_form(slack.command_payload(channel, user, text))
    assert response.status_code == 200
    return str(response.json()["text"])


def headlines(slack: LocalSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(channel) if m.get("bot_id") and m.get("thread_ts") in (None, m["ts"])]


def digest_thread(slack: LocalSlack, channel: str, headline: dict[str, Any]) -> str:
    return "\n".join(m["text"] for m in slack.messages(channel, headline["ts"])[1:])


def links_resolve(slack: LocalSlack, text: str) -> list[dict[str, Any]]:
    """Every permalink in `text`, as the stored message it points at (a dead link fails the test)."""
    found = []
    for url in LINK.findall(text):
        match = re.search(r"/archives/([A-Z0-9]+)/p(\d{10})(\d{6})", url)
        assert match, url
        message = slack.message(match.group(1), f"{match.group(2)}.{match.group(3)}")
        assert message is not None, f"{url} points at no message"
        found.append(message)
    return found


def subscriptions(settings: Settings) -> list[dict[str, Any]]:
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute("SELECT * FROM digest_subscriptions ORDER BY id")]


def digest_runs(settings: Settings) -> list[dict[str, Any]]:
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        connection.row_factory = sqlite3.Row
        return [dict(r) for r in connection.execute("SELECT * FROM digest_runs ORDER BY id")]


def finished(settings: Settings, subscription_id: int | None, count: int = 1) -> bool:
    """Whether `count` runs of a subscription (None: on-demand ones) are done: headline and thread posted."""
    done = [r for r in digest_runs(settings) if r["subscription_id"] == subscription_id and r["status"] != "claimed"]
    return len(done) >= count


def seed_day(slack: LocalSlack, channel: str, people: list[str], *, hours: float = 20, count: int = 30) -> list[str]:
    """A day of talk ending now: chatter, a decision, an action item and an open question."""
    now = time.time()
    texts = [f"chatter number {i} about the build" for i in range(count - 3)]
    texts += [
        "we decided to move CI to arm64 runners",
        "I will rotate the staging keys on Friday",
        "who owns the pager?",
    ]
    seeded = []
    for i, text in enumerate(texts):
        at = now - hours * 3600 + i * (hours * 3600 / len(texts))
        seeded.append(slack.seed(channel, people[i % len(people)], text, at=at))
    return seeded


# --- acceptance 1: one digest per window, whatever restarts or replicas do --------------------------


def test_a_daily_digest_posts_its_window_once_across_restarts_replicas_and_downtime(
    digest_bots: DigestBots, slack: LocalSlack, bot_settings: Settings
) -> None:
    channel = slack.add_channel("eng-platform")
    alice = slack.add_user("alice", tz="Europe/Berlin")
    bob = slack.add_user("bob")
    seed_day(slack, channel, [alice, bob])
    bot = digest_bots.start()

    reply = command(digest_bots, bot, slack, channel, alice, "digest daily 09:00")
    assert reply.startswith("A digest of this channel is set: daily 09:00 (Europe/Berlin), posted here.")
    [daily] = subscriptions(bot_settings)
    assert (daily["cron"], daily["timezone"], daily["kind"]) == ("0 9 * * *", "Europe/Berlin", "channel")
    assert bot.digest_jobs is not None and bot.digest_jobs.next_run(daily["id"]) is not None

    # Bob's Slack says UTC: a daily trigger a few seconds from now (six fields, seconds first).
    at = datetime.now(UTC) + timedelta(seconds=4)
    reply = command(digest_bots, bot, slack, channel, bob, f'digest cron "{at.second} {at.minute} {at.hour} * * *"')
    assert "(UTC), posted here" in reply, reply
    soon = subscriptions(bot_settings)[-1]

    wait_for(lambda: finished(bot_settings, soon["id"]), what="the scheduled digest")
    assert [r["status"] for r in digest_runs(bot_settings)] == ["posted"], digest_runs(bot_settings)
    [headline] = headlines(slack, channel)
    assert re.match(r"#eng-platform, \w{3} \d{1,2} \w{3}: 30 messages in 0 threads", headline["text"])
    text = digest_thread(slack, channel, headline)
    assert "*Decisions*" in text and "arm64" in text
    assert "*Action items*" in text and "rotate the staging keys" in text and "(owner: alice)" in text
    assert "*Open questions*" in text and "pager" in text
    linked = links_resolve(slack, text)
    assert linked and all(m.get("bot_id") is None for m in linked)
    assert f"[{INVENTED}]" not in text
    up = headline["blocks"][-1]["elements"][0]
    assert up["action_id"] == "ember_digest_up"
    click = slack.block_action(channel, alice, headline["ts"], up["action_id"], value=up["value"])
    assert digest_bots.client(bot).send_interaction(click).status_code == 200
    wait_for(lambda: _digest_votes(bot_settings) == [(alice, 1)], what="the vote on the digest")
    assert _answer_votes(bot_settings) == 0, "a digest vote is not an answer vote (nor training data)"

    # The same trigger again, a second process with its scheduler on, and a restart: nothing more.
    again = bot.digest_jobs.fire(soon["id"])
    assert again is not None and again.status == "taken"
    second = digest_bots.start()
    digest_bots.stop(second)
    digest_bots.stop(bot)
    restarted = digest_bots.start()
    time.sleep(2)
    assert len(headlines(slack, channel)) == 1
    posted = [r for r in digest_runs(bot_settings) if r["subscription_id"] == soon["id"]]
    assert [r["status"] for r in posted] == ["posted"]

    # Days of downtime: a daily subscription that should have fired an hour or two ago and on the days before.
    digest_bots.stop(restarted)
    missed = _backdated_subscription(bot_settings, channel, alice, days=3)
    digest_bots.start()
    wait_for(lambda: finished(bot_settings, missed), what="the missed window")
    time.sleep(2)
    runs = [r for r in digest_runs(bot_settings) if r["subscription_id"] == missed]
    assert len(runs) == 1, "only the latest missed window is posted"
    start = datetime.fromisoformat(runs[0]["window_start"]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(runs[0]["window_end"]).replace(tzinfo=UTC)
    assert end - start == timedelta(days=1) and datetime.now(UTC) - end < timedelta(days=1)
    assert len(headlines(slack, channel)) == 2


def _digest_votes(settings: Settings) -> list[tuple[str, int]]:
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        return [tuple(row) for row in connection.execute("SELECT user_id, value FROM digest_votes")]


def _answer_votes(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        [(count,)] = connection.execute("SELECT count(*) FROM votes").fetchall()
        return int(count)


def _backdated_subscription(settings: Settings, channel: str, user: str, *, days: int) -> int:
    """A daily subscription that has existed for `days` days, with none of its runs done.

    It fires on the hour one to two hours ago, so that its latest closed window holds most of
    `seed_day`'s talk whatever the time of day the test runs at.
    """
    now = datetime.now(UTC)
    hour = (now - timedelta(hours=1)).hour
    created = (now - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(settings.data_dir / "ember.db") as connection:
        cursor = connection.execute(
            "INSERT INTO digest_subscriptions (workspace_id, kind, channel_id, channel_type, user_id, cron,"
            " timezone, label, created_at) VALUES ('T0001', 'channel', ?, 'channel', ?, ?, 'UTC', ?, ?)",
            (channel, user, f"0 {hour} * * *", f"daily {hour:02d}:00", created),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


# --- acceptance 2: a big window, paginated, rate limited, nothing lost ------------------------------


def test_a_1200_message_window_with_threads_and_429s_loses_nothing_and_links_only_real_messages(
    digest_bots: DigestBots, slack: LocalSlack, bot_settings: Settings
) -> None:
    channel = slack.add_channel("eng")
    people = [slack.add_user(name) for name in ("alice", "bob", "carol", "dave")]
    now = time.time()
    texts: list[str] = []
    # 40 threads of one parent and 9 replies, then 800 messages of their own: 1,200 in the window.
    for t in range(40):
        parent_at = now - 20 * 3600 + t * 1200
        news = f"we decided to ship part {t}" if t % 4 == 0 else "a status update"
        parent = slack.seed(channel, people[t % 4], f"thread {t} opener: {news}", at=parent_at)
        texts.append(f"thread {t} opener")
        for r in range(9):
            slack.seed(channel, people[r % 4], f"thread {t} reply {r}", at=parent_at + 60 + r, thread_ts=parent)
            texts.append(f"thread {t} reply {r}")
    for i in range(800):
        slack.seed(channel, people[i % 4], f"loose message {i}", at=now - 19 * 3600 + i * 60)
        texts.append(f"loose message {i}")
    # Left out: Ember's own message, one marked :no_entry_sign:, and a thread parent from before the
    # window whose reply falls in it (the reply counts, the old parent is context).
    slack.seed(channel, people[0], "an old digest of mine", at=now - 3600, bot=True)
    slack.seed(channel, people[1], "off the record: salaries", at=now - 1800, reactions=["no_entry_sign"])
    old = slack.seed(channel, people[2], "an old question from last week", at=now - 5 * 86400)
    slack.seed(channel, people[3], "late answer to the old question", at=now - 600, thread_ts=old)
    texts.append("late answer to the old question")

    bot = digest_bots.start()
    slack.fail_next("conversations.history", status=429, retry_after=1)
    slack.fail_next("conversations.replies", status=429, retry_after=1)
    reply = command(digest_bots, bot, slack, channel, people[0], "digest now 24h")
    assert "catch-up by DM" in reply
    dm = _dm_of(slack, people[0])
    wait_for(lambda: finished(bot_settings, None), timeout=120, what="the catch-up")
    [headline] = headlines(slack, dm)
    assert ": 1,201 messages in 41 threads" in headline["text"], headline["text"]
    assert len([c for c in slack.calls if c.status == 429]) == 2

    assert digest_bots.engine.overflowed() == [], "every prompt and its reply fit the context window"
    prompts = digest_bots.engine.prompt_text()
    missing = [t for t in texts if t not in prompts]
    assert missing == [], f"{len(missing)} messages never reached the model"
    assert "salaries" not in prompts and "an old digest of mine" not in prompts
    text = digest_thread(slack, dm, headline)
    linked = links_resolve(slack, text)
    decided = {f"thread {t} opener: we decided to ship part {t}" for t in range(0, 40, 4)}
    assert decided <= {m["text"] for m in linked}, "every decision links its thread's opener"
    assert all(m["text"] != "an old digest of mine" for m in linked)
    assert f"[{INVENTED}]" not in text


def _status(outcome: Outcome | None) -> str | None:
    return outcome.status if outcome is not None else None


def _dm_of(slack: LocalSlack, user: str) -> str:
    wait_for(lambda: any(c.kind == "im" and c.user == user for c in slack.workspace.channels.values()), timeout=60)
    return next(c.id for c in slack.workspace.channels.values() if c.kind == "im" and c.user == user)


# --- acceptance 3: a recap holds only what its recipient can read -----------------------------------


def test_a_personal_recap_covers_a_private_channel_only_for_its_members(
    digest_bots: DigestBots, slack: LocalSlack, bot_settings: Settings
) -> None:
    alice, bob = slack.add_user("alice"), slack.add_user("bob")
    public = slack.add_channel("general", members=[alice, bob])
    private = slack.add_channel("leadership", kind="private", members=[alice])
    now = time.time()
    slack.seed(public, bob, "we decided to order pizza for the offsite", at=now - 3600)
    slack.seed(private, alice, "we decided to reorganise the platform team", at=now - 3000)
    bot = digest_bots.start()
    for person in (alice, bob):
        assert "Your personal recap is set" in command(digest_bots, bot, slack, public, person, "digest me daily 08:00")
    subs = {s["user_id"]: s["id"] for s in subscriptions(bot_settings)}
    window = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    assert bot.digest_jobs is not None

    before = len(digest_bots.engine.prompts)
    assert _status(bot.digest_jobs.run(subs[bob], window)) == "posted"
    bob_prompts = "\n".join(p.prompt for p in digest_bots.engine.prompts[before:])
    assert _status(bot.digest_jobs.run(subs[alice], window)) == "posted"

    alice_dm, bob_dm = _dm_of(slack, alice), _dm_of(slack, bob)
    alice_text = "\n".join(m["text"] for m in slack.messages(alice_dm))
    bob_text = "\n".join(m["text"] for m in slack.messages(bob_dm))
    assert "pizza" in alice_text and "reorganise" in alice_text and f"<#{private}>" in alice_text
    assert "pizza" in bob_text
    assert "reorganise" not in bob_text and private not in bob_text and "leadership" not in bob_text
    assert "reorganise" not in bob_prompts, "the private channel's words reached no prompt of Bob's recap"
    for message in links_resolve(slack, bob_text):
        assert message["text"] != "we decided to reorganise the platform team"


# --- acceptance 4: list, off, now, the thread shortcut, and bad input --------------------------------


def test_digest_commands_answer_clearly_and_bad_input_stores_nothing(
    digest_bots: DigestBots, slack: LocalSlack, bot_settings: Settings
) -> None:
    channel, alice = slack.add_channel("eng"), slack.add_user("alice")
    bot = digest_bots.start()
    say = lambda text: command(digest_bots, bot, slack, channel, alice, text)  # noqa: E731

    assert say("digest hourly").startswith("I don't know the cadence `hourly`.")
    assert say("digest daily 25:00").startswith("`25:00` is not a time of day")
    assert say("digest weekly someday 09:00").startswith("`someday` is not a day of the week")
    assert say('digest cron "61 * * *"').startswith("`61 * * *` is not a cron schedule")
    assert say("digest now fortnight").startswith("`fortnight` is not a span I know")
    assert subscriptions(bot_settings) == []

    assert say("digest list").startswith("No digests here yet.")
    assert "weekly fri 16:30" in say("digest weekly fri 16:30")
    assert "Your personal recap is set" in say("digest me daily")
    listed = say("digest list")
    [weekly, personal] = subscriptions(bot_settings)
    assert f"`{weekly['id']}` <#{channel}>: weekly fri 16:30 (UTC)" in listed
    assert f"`{personal['id']}` your personal recap: daily 09:00 (UTC)" in listed
    assert say("digest off 999").startswith("There is no digest `999` here.")
    assert say(f"digest off {weekly['id']}") == f"Stopped: `{weekly['id']}` (weekly fri 16:30)."
    assert [s["id"] for s in subscriptions(bot_settings)] == [personal["id"]]
    assert bot.digest_jobs is not None and bot.digest_jobs.next_run(weekly["id"]) is None

    # A quiet window posts nothing (EMBER_DIGEST_QUIET=skip), and is recorded as quiet.
    quiet = slack.add_channel("quiet")
    assert "is set" in command(digest_bots, bot, slack, quiet, alice, "digest daily 09:00")
    quiet_sub = subscriptions(bot_settings)[-1]["id"]
    window = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    assert bot.digest_jobs.run(quiet_sub, window) is not None
    assert [r["status"] for r in digest_runs(bot_settings) if r["subscription_id"] == quiet_sub] == ["quiet"]
    assert headlines(slack, quiet) == []

    # A thread, summarised through the message shortcut and through a link.
    root = slack.seed(channel, alice, "should we cache the builds?", at=time.time() - 600)
    slack.seed(channel, alice, "we decided to cache them in S3", at=time.time() - 300, thread_ts=root)
    payload = slack.message_shortcut(channel, alice, root, SUMMARIZE_SHORTCUT)
    assert digest_bots.client(bot).send_interaction(payload).status_code == 200
    wait_for(lambda: any("Summary of this thread" in e.get("text", "") for e in slack.ephemerals(channel)))
    [summary] = [e for e in slack.ephemerals(channel) if "Summary of this thread" in e.get("text", "")]
    assert summary["user"] == alice and summary["thread_ts"] == root and "cache them in S3" in summary["text"]
    links_resolve(slack, summary["text"])

    assert say("summarize").startswith("Slack doesn't run slash commands inside threads")
    link = f"{slack.base_url}/archives/{channel}/p{root.replace('.', '')}"
    assert say(f"summarize {link}") == "Reading the thread…"
    wait_for(lambda: any("Summary of this thread" in c.args.get("text", "") for c in slack.calls_to("response_url")))

    assert "catch-up by DM" in say("digest now since-last")
    wait_for(lambda: finished(bot_settings, None), what="the catch-up DM")
    assert headlines(slack, _dm_of(slack, alice))
