"""Schedules: cron expressions (EMBER_TRAIN_CRON, digest subscriptions) of five crontab fields, or six with
seconds first, and the windows a digest on such a schedule covers. Slack-free and scheduler-free, so the
commands that take a schedule and the scheduler that runs it read it the same way."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


# --- what people write: `daily 09:00`, `weekly fri 17:00`, `cron "0 9 * * 1-5"` --------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TIME = "09:00"
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


class ScheduleError(ValueError):
    """What the person wrote is not a schedule; the message says what to write."""


@dataclass(frozen=True)
class Schedule:
    cron: str
    label: str


def parse_schedule(words: list[str]) -> Schedule:
    """`daily [HH:MM]`, `weekly [day] [HH:MM]` or `cron "<5 fields>"` -> a cron line and its label."""
    if not words:
        raise ScheduleError('Say how often: `daily [HH:MM]`, `weekly [mon..sun] [HH:MM]` or `cron "0 9 * * 1-5"`.')
    cadence, rest = words[0].lower(), words[1:]
    if cadence == "daily":
        hour, minute = _time(rest[0] if rest else DEFAULT_TIME)
        _no_more(rest[1:], "daily [HH:MM]")
        return Schedule(f"{minute} {hour} * * *", f"daily {hour:02d}:{minute:02d}")
    if cadence == "weekly":
        day = rest[0].lower()[:3] if rest and not _TIME.match(rest[0]) else "mon"
        if rest and not _TIME.match(rest[0]) and rest[0].lower()[:3] not in DAYS:
            raise ScheduleError(f"`{rest[0]}` is not a day of the week: use one of {', '.join(DAYS)}.")
        times = rest[1:] if rest and not _TIME.match(rest[0]) else rest
        hour, minute = _time(times[0] if times else DEFAULT_TIME)
        _no_more(times[1:], "weekly [mon..sun] [HH:MM]")
        return Schedule(f"{minute} {hour} * * {day}", f"weekly {day} {hour:02d}:{minute:02d}")
    if cadence == "cron":
        expression = " ".join(rest)
        try:
            cron_trigger(expression)
        except ValueError as exc:
            raise ScheduleError(
                f"`{expression or '(nothing)'}` is not a cron schedule ({exc}). Write five fields, minute hour "
                'day month weekday, in quotes: `/ember digest cron "0 9 * * 1-5"`.'
            ) from None
        return Schedule(expression, f"cron {expression}")
    raise ScheduleError(
        f"I don't know the cadence `{words[0]}`. Use `daily [HH:MM]`, `weekly [mon..sun] [HH:MM]` "
        'or `cron "0 9 * * 1-5"`.'
    )


def _time(text: str) -> tuple[int, int]:
    match = _TIME.match(text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ScheduleError(f"`{text}` is not a time of day: write HH:MM on a 24-hour clock, e.g. 09:00 or 17:30.")
    return int(match.group(1)), int(match.group(2))


def _no_more(words: list[str], shape: str) -> None:
    if words:
        raise ScheduleError(f"I didn't understand `{' '.join(words)}`: write `{shape}`.")
