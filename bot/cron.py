"""Cron expressions for EMBER_TRAIN_CRON: five crontab fields, or six with seconds first."""

from __future__ import annotations

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
