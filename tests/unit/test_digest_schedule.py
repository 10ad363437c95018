"""Digest schedules: what a person may write, the window each firing covers, and the claim that keeps a
window from being posted twice (a real SQLite file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from db import Database
from db.digests import FAILED, claim_run, finish_run, forget_digests, owned_by, subscribe, subscriptions
from handlers.qa.schedule import ScheduleError, cron_trigger, last_closed_window, parse_schedule


@pytest.mark.parametrize(
    ("words", "cron", "label"),
    [
        (["daily"], "0 9 * * *", "daily 09:00"),
        (["daily", "7:05"], "5 7 * * *", "daily 07:05"),
        (["weekly"], "0 9 * * mon", "weekly mon 09:00"),
        (["weekly", "Friday", "16:30"], "30 16 * * fri", "weekly fri 16:30"),
        (["weekly", "17:00"], "0 17 * * mon", "weekly mon 17:00"),
        (["cron", "0 9 * * 1-5"], "0 9 * * 1-5", "cron 0 9 * * 1-5"),
    ],
)
def test_a_schedule_becomes_a_cron_line(words: list[str], cron: str, label: str) -> None:
    schedule = parse_schedule(words)
    assert (schedule.cron, schedule.label) == (cron, label)
    cron_trigger(schedule.cron, "Europe/Berlin")


@pytest.mark.parametrize(
    ("words", "says"),
    [
        ([], "Say how often"),
        (["hourly"], "I don't know the cadence `hourly`"),
        (["daily", "24:00"], "`24:00` is not a time of day"),
        (["daily", "9am"], "`9am` is not a time of day"),
        (["daily", "09:00", "sharp"], "I didn't understand `sharp`"),
        (["weekly", "someday"], "`someday` is not a day of the week"),
        (["cron", "0", "9"], "`0 9` is not a cron schedule"),
        (["cron", "99", "*", "*", "*", "*"], "`99 * * * *` is not a cron schedule"),
    ],
)
def test_a_bad_schedule_says_what_to_write(words: list[str], says: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(words)
    assert str(raised.value).startswith(says)


def test_a_firing_covers_the_window_since_the_previous_one_in_the_subscribers_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    daily = cron_trigger("0 9 * * *", "Europe/Berlin")
    window = last_closed_window(daily, datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert window == (datetime(2026, 11, 30, 9, 0, tzinfo=berlin), datetime(2026, 12, 1, 9, 0, tzinfo=berlin))
    weekly = cron_trigger("30 16 * * fri", "UTC")
    start, end = last_closed_window(weekly, datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) or (None, None)
    assert (start, end) == (datetime(2026, 11, 20, 16, 30, tzinfo=UTC), datetime(2026, 11, 27, 16, 30, tzinfo=UTC))
    # Across the end of summer time the window is still "since the last 09:00", 25 hours long.
    autumn = last_closed_window(daily, datetime(2026, 10, 25, 12, 0, tzinfo=UTC))
    assert autumn is not None and autumn[1].astimezone(UTC) - autumn[0].astimezone(UTC) == timedelta(hours=25)


def test_a_window_is_claimed_once_and_a_failed_one_may_be_claimed_again(db: Database) -> None:
    start, end = datetime(2026, 11, 30, 9, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC)
    with db.session() as session:
        sub = subscribe(
            session,
            workspace_id="T1",
            kind="channel",
            channel_id="C1",
            channel_type="channel",
            user_id="U1",
            cron="0 9 * * *",
            timezone="UTC",
            label="daily 09:00",
        )
    claim = dict(subscription_id=sub.id, workspace_id="T1", window_start=start, window_end=end)
    with db.session() as session:
        first = claim_run(session, owner="replica-a", **claim)  # type: ignore[arg-type]
    with db.session() as session:
        # The same instant written in another zone is the same window.
        again = dict(claim, window_start=start.astimezone(ZoneInfo("Asia/Tokyo")))
        assert claim_run(session, owner="replica-b", **again) is None  # type: ignore[arg-type]
    assert first is not None
    with db.session() as session:
        finish_run(session, run_id=first, status=FAILED, detail={"error": "boom"})
    with db.session() as session:
        assert claim_run(session, owner="replica-b", **claim) == first  # type: ignore[arg-type]
    with db.session() as session:
        assert claim_run(session, owner="replica-c", **claim) is None  # type: ignore[arg-type]


def test_forgetting_a_person_drops_their_recaps_but_not_the_channels_digests(db: Database) -> None:
    common = dict(workspace_id="T1", channel_id="C1", channel_type="channel", cron="0 9 * * *", timezone="UTC")
    with db.session() as session:
        subscribe(session, kind="channel", user_id="U1", label="daily 09:00", **common)
        subscribe(session, kind="personal", user_id="U1", label="daily 09:00", **common)
        subscribe(session, kind="personal", user_id="U2", label="daily 09:00", **common)
    with db.session() as session:
        assert forget_digests(session, workspace_id="T1", user_id="U1") == 1
    with db.session() as session:
        left = [(s.kind, s.user_id) for s in subscriptions(session)]
    assert left == [("channel", "U1"), ("personal", "U2")]


def test_a_person_owns_their_recaps_and_the_channel_digests_they_set_up_and_nothing_else(db: Database) -> None:
    common = dict(channel_id="C1", channel_type="channel", cron="0 9 * * *", timezone="UTC", label="daily 09:00")
    with db.session() as session:
        theirs = subscribe(session, workspace_id="T1", kind="channel", user_id="U1", **common)
        recap = subscribe(session, workspace_id="T1", kind="personal", user_id="U1", **common)
        other = subscribe(session, workspace_id="T1", kind="personal", user_id="U2", **common)
        subscribe(session, workspace_id="T2", kind="personal", user_id="U1", **common)
    with db.session() as session:
        assert [s.id for s in owned_by(session, workspace_id="T1", user_id="U1")] == [theirs.id, recap.id]
        assert owned_by(session, workspace_id="T1", user_id="U1", subscription_id=other.id) == []
        [one] = owned_by(session, workspace_id="T1", user_id="U1", subscription_id=recap.id)
        assert one.kind == "personal"
