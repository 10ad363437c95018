"""Schedules: cron expressions (EMBER_TRAIN_CRON, digest subscriptions) of five crontab fields, or six with
seconds first, and the windows a digest on such a schedule covers. Slack-free and scheduler-free, so the
commands that take a schedule and the scheduler that runs it read it the same way."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

FIELDS = ("second", "minute", "hour", "day", "month", "day_of_week")


def cron_trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    fields = expression.split()
    zone = ZoneInfo(timezone)
    if len(fields) == 6:
        return CronTrigger(**dict(zip(FIELDS, fields, strict=True)), timezone=zone)
    if len(fields) == 5:
        return CronTrigger.from_crontab(expression, timezone=zone)
    raise ValueError("needs 5 crontab fields (or 6, seconds first)")


# How far back to look for a schedule's previous firing, shortest first: a frequent schedule is found
# in a few steps, a yearly one still within a year.
_LOOKBACKS = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=1, hours=1),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
)


def last_closed_window(trigger: CronTrigger, now: datetime) -> tuple[datetime, datetime] | None:
    """The latest window [previous firing, last firing] that has ended by `now`: what a digest firing
    at its last scheduled time covers. None for a schedule that has not fired twice within a year."""
    end = _last_firing(trigger, now)
    if end is None:
        return None
    start = _last_firing(trigger, end - timedelta(microseconds=1))
    return (start, end) if start is not None else None


def _last_firing(trigger: CronTrigger, at: datetime) -> datetime | None:
    """The latest time at or before `at` the trigger fires."""
    for lookback in _LOOKBACKS:
        fired: datetime | None = None
        moment = trigger.get_next_fire_time(None, at - lookback)
        while moment is not None and moment <= at:
            fired = moment
            moment = trigger.get_next_fire_time(moment, moment + timedelta(microseconds=1))
        if fired is not None:
            return fired
    return None


def next_firing(trigger: CronTrigger, now: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, now)
