"""When a schedule runs (#35): from its cron times since the last one it planned and the
clock, at most one run to start now — never a burst after the workbench was down.

A time whose run is late by more than ``grace`` seconds was missed (the workbench was down,
or the service was busy for long): ``missed="once"`` runs once for the newest of them,
``missed="skip"`` leaves them and waits for the next time. The planned time is recorded
before its job is submitted (see :mod:`.store`), so a restart neither loses nor doubles it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .cron import ScheduleError, times_between

MISSED = ("once", "skip")
GRACE = 300.0  # seconds: a run this late still runs whatever ``missed`` says


@dataclass(frozen=True)
class Plan:
    """``run``: the cron time to run now (None: nothing now); ``covered``: the newest cron
    time decided on (run or skipped), the next plan starts after it; ``skipped``: how many
    times were left out."""

    run: dt.datetime | None
    covered: dt.datetime | None
    skipped: int


def check_missed(missed: str) -> str:
    if missed not in MISSED:
        raise ScheduleError(
            f"missed={missed!r}: 'once' (a run missed while the workbench was down runs once "
            "when it is back) or 'skip' (it waits for the next time)"
        )
    return missed


def plan(
    cron: str,
    timezone: str,
    since: dt.datetime,
    now: dt.datetime,
    missed: str = "once",
    grace: float = GRACE,
) -> Plan:
    """The run to start at ``now`` for cron times after ``since`` (the newest time already
    decided on, or the schedule's creation)."""
    check_missed(missed)
    due = times_between(cron, timezone, since, now)
    if not due:
        return Plan(None, None, 0)
    newest = due[-1]
    on_time = (now - newest).total_seconds() <= grace
    if on_time or missed == "once":
        return Plan(newest, newest, len(due) - 1)
    return Plan(None, newest, len(due))
