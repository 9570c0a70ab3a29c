"""Cron expressions for scheduled notebook runs (#35): checked with a message that says
what to write, the next run times in the schedule's time zone (croniter, daylight saving
included), and both in words for the "Schedule…" helper."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter

FIELDS = "minute hour day-of-month month day-of-week"
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


class ScheduleError(ValueError):
    """A schedule request that cannot be taken; the message says what to change."""


def check_cron(expr: str) -> str:
    """The expression with single spaces; five fields or refused with what to write."""
    if not isinstance(expr, str) or not expr.strip():
        raise ScheduleError(f"cron: five fields ({FIELDS}), e.g. '0 2 * * *' for 02:00 daily")
    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"cron {expr!r}: {len(fields)} fields; five are needed ({FIELDS}), "
            "e.g. '*/15 * * * *' for every 15 minutes"
        )
    normal = " ".join(fields)
    if not croniter.is_valid(normal):
        raise ScheduleError(
            f"cron {expr!r} is not a cron expression: minute 0-59, hour 0-23, day 1-31, "
            "month 1-12, weekday 0-6 (Sunday 0); '*', lists '1,15', ranges '1-5', steps '*/10'"
        )
    try:  # valid, yet a time that never comes ('0 0 30 2 *': 30 February)
        croniter(normal, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).get_next(dt.datetime)
    except Exception:  # croniter's CroniterBadDateError, or whatever else it raises
        raise ScheduleError(
            f"cron {expr!r} never comes (a day no month has?): pick days that exist"
        ) from None
    return normal


def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"timezone {name!r}: an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'"
        ) from None


def next_times(expr: str, timezone: str, after: dt.datetime, count: int = 5) -> list[dt.datetime]:
    """The ``count`` run times after ``after``, in ``timezone`` (aware datetimes)."""
    it = croniter(check_cron(expr), after.astimezone(check_timezone(timezone)))
    return [it.get_next(dt.datetime) for _ in range(count)]


def times_between(
    expr: str, timezone: str, start: dt.datetime, end: dt.datetime, limit: int = 10_000
) -> list[dt.datetime]:
    """The run times in (start, end], oldest first (at most ``limit``, the newest kept).
    Times more than two days before ``end`` are not looked at (a long stop of the
    workbench costs no long walk)."""
    start = max(start, end - dt.timedelta(days=2))
    it = croniter(check_cron(expr), start.astimezone(check_timezone(timezone)))
    found: list[dt.datetime] = []
    while (when := it.get_next(dt.datetime)) <= end:
        found.append(when)
        if len(found) > limit:
            found.pop(0)
    return found


def _clock(hour: str, minute: str) -> str | None:
    if hour.isdigit() and minute.isdigit():
        return f"{int(hour):02d}:{int(minute):02d}"
    return None


def describe(expr: str) -> str:
    """The common shapes in words ("every day at 02:00"); others as the expression."""
    minute, hour, day, month, weekday = check_cron(expr).split()
    clock = _clock(hour, minute)
    rest = (day, month, weekday)
    if (minute, hour) == ("*", "*") and rest == ("*", "*", "*"):
        return "every minute"
    if minute.startswith("*/") and hour == "*" and rest == ("*", "*", "*"):
        return f"every {minute[2:]} minutes"
    if minute.isdigit() and hour == "*" and rest == ("*", "*", "*"):
        return f"every hour at minute {int(minute)}"
    if clock and rest == ("*", "*", "*"):
        return f"every day at {clock}"
    if clock and (day, month) == ("*", "*") and weekday.isdigit() and int(weekday) <= 7:
        return f"every {DAYS[int(weekday) % 7]} at {clock}"
    if clock and (day, month) == ("*", "*") and weekday == "1-5":
        return f"every weekday (Monday to Friday) at {clock}"
    if clock and day.isdigit() and (month, weekday) == ("*", "*"):
        return f"on day {int(day)} of every month at {clock}"
    return f"on the cron schedule '{expr}'"


def in_words(when: dt.datetime, now: dt.datetime) -> str:
    """'Mon 7 Dec 2026, 02:00 CET (in 3 hours)'."""
    seconds = (when - now).total_seconds()
    if seconds < 90:
        later = f"in {max(0, round(seconds))} seconds"
    elif seconds < 90 * 60:
        later = f"in {round(seconds / 60)} minutes"
    elif seconds < 36 * 3600:
        later = f"in {round(seconds / 3600)} hours"
    else:
        later = f"in {round(seconds / 86400)} days"
    stamp = f"{when:%a} {when.day} {when:%b %Y, %H:%M} {when.tzname() or ''}".strip()
    return f"{stamp} ({later})"
