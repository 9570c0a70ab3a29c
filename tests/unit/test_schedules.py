"""Scheduled runs' engine (#35), on a clock the test moves: cron checks and words, the
times in a time zone across daylight saving, at most one run per tick and none doubled or
lost across a restart, the frozen notebook, pause/resume, and another owner refused."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from hubforge.schedules import (
    ScheduleError,
    ScheduleNotFound,
    Schedules,
    check_cron,
    describe,
    in_words,
    job_id,
    next_times,
    plan,
)

UTC = dt.UTC
NOTEBOOK = {  # the cell tagged "parameters" sets the ones a schedule may give
    "cells": [
        {"cell_type": "code", "source": "epochs = 1", "metadata": {"tags": ["parameters"]}},
        {"cell_type": "code", "source": "x = 1", "metadata": {}},
    ],
    "nbformat": 4,
}


class Clock:
    def __init__(self, when: dt.datetime):
        self.now = when

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_cron_expressions_are_checked_and_said_in_words():
    assert check_cron("  0   2 * *  * ") == "0 2 * * *"
    for bad, said in [
        ("0 2 * *", "4 fields; five are needed"),
        ("0 0 2 * * *", "6 fields"),
        ("61 * * * *", "is not a cron expression: minute 0-59"),
        ("", "five fields"),
    ]:
        with pytest.raises(ScheduleError, match=said):
            check_cron(bad)
    assert describe("* * * * *") == "every minute"
    assert describe("*/15 * * * *") == "every 15 minutes"
    assert describe("5 * * * *") == "every hour at minute 5"
    assert describe("0 2 * * *") == "every day at 02:00"
    assert describe("30 9 * * 1") == "every Monday at 09:30"
    assert describe("30 9 * * 1-5") == "every weekday (Monday to Friday) at 09:30"
    assert describe("0 6 1 * *") == "on day 1 of every month at 06:00"
    assert describe("0 6 1 1 *") == "on the cron schedule '0 6 1 1 *'"


def test_next_times_are_in_the_schedules_zone_across_daylight_saving():
    # Berlin moves its clocks from 02:00 to 03:00 on 29 March 2026: that day has no 02:30,
    # and the run is at 03:00, as cron runs a job of the skipped hour; then 02:30 again
    times = next_times("30 2 * * *", "Europe/Berlin", at("2026-03-27T12:00:00"), 3)
    assert [t.strftime("%d %H:%M %Z") for t in times] == [
        "28 02:30 CET", "29 03:00 CEST", "30 02:30 CEST",
    ]  # fmt: skip
    with pytest.raises(ScheduleError, match="an IANA name such as 'UTC'"):
        next_times("* * * * *", "Mars/Olympus", at("2026-03-27T12:00:00"))
    said = in_words(at("2026-12-07T02:00:00"), at("2026-12-06T23:00:00"))
    assert said == "Mon 7 Dec 2026, 02:00 UTC (in 3 hours)"


def test_one_run_per_tick_and_a_missed_run_once_or_not_at_all():
    since = at("2026-12-05T10:00:00")
    assert plan("* * * * *", "UTC", since, at("2026-12-05T10:00:30")).run is None
    on_time = plan("* * * * *", "UTC", since, at("2026-12-05T10:01:02"))
    assert on_time.run == at("2026-12-05T10:01:00") and on_time.skipped == 0
    # the workbench was down for an hour: 60 times passed; one run, not 60
    late = at("2026-12-05T11:00:40")
    once = plan("* * * * *", "UTC", since, late, missed="once")
    assert once.run == at("2026-12-05T11:00:00") and once.skipped == 59
    # with "skip", the ones older than the grace are left; the newest is still on time here
    skip = plan("0 * * * *", "UTC", since, at("2026-12-05T13:30:00"), missed="skip")
    assert skip.run is None and skip.covered == at("2026-12-05T13:00:00") and skip.skipped == 3
    with pytest.raises(ScheduleError, match="'once'"):
        plan("* * * * *", "UTC", since, late, missed="twice")


def test_runs_are_planned_once_and_a_crash_between_plan_and_submit_loses_nothing(tmp_path):
    clock = Clock(at("2026-12-05T10:00:10"))
    store = Schedules(tmp_path, clock)
    made = store.create("ana", NOTEBOOK, "*/5 * * * *", params={"epochs": 2}, name="nightly")
    assert made["cron"] == "*/5 * * * *" and made["paused"] is False
    assert store.due() == []  # nothing before 10:05
    clock.advance(minutes=5)
    ((schedule, run),) = store.due()
    assert schedule["id"] == made["id"] and schedule["name"] == "nightly"
    assert run["number"] == 1 and run["due"] == "2026-12-05T10:05:00+00:00"
    assert run["job"] == job_id(made["id"], 1) and run["state"] == "planned"
    # the service stops before it marks the run submitted: the next tick (another process,
    # the same folder) hands back the same run, with the same job id, and plans no other
    again = Schedules(tmp_path, clock).due()
    assert [(s["id"], r["number"], r["job"]) for s, r in again] == [(made["id"], 1, run["job"])]
    store.mark("ana", made["id"], 1, state="submitted")
    assert store.due() == []
    clock.advance(minutes=5)
    ((_, second),) = store.due()
    assert second["number"] == 2 and second["job"].endswith("-r2")


def test_the_notebook_is_frozen_paused_schedules_wait_and_others_are_refused(tmp_path):
    clock = Clock(at("2026-12-05T10:00:10"))
    store = Schedules(tmp_path, clock)
    notebook = json.loads(json.dumps(NOTEBOOK))
    made = store.create("ana", notebook, "* * * * *")
    notebook["cells"][1]["source"] = "x = 2"  # the owner edits the original
    assert store.notebook("ana", made["id"])["cells"][1]["source"] == "x = 1"
    store.update_notebook("ana", made["id"], notebook)  # "update to the current version"
    assert store.notebook("ana", made["id"])["cells"][1]["source"] == "x = 2"

    store.set_paused("ana", made["id"], True)
    clock.advance(minutes=10)
    assert store.due() == []
    store.set_paused("ana", made["id"], False)  # from now: the paused ten minutes stay missed
    clock.advance(minutes=1)
    assert [r["number"] for _, r in store.due()] == [1]

    for call in (
        lambda: store.get("bob", made["id"]),
        lambda: store.set_paused("bob", made["id"], True),
        lambda: store.delete("bob", made["id"]),
        lambda: store.notebook("bob", made["id"]),
        lambda: store.get("ana", "../bob"),
        lambda: store.get("../x", made["id"]),
    ):
        with pytest.raises(ScheduleNotFound):
            call()
    assert [s["id"] for s in store.list("ana")] == [made["id"]]
    assert store.list("bob") == [] and len(store.list()) == 1  # an admin sees every one
    store.delete("ana", made["id"])
    assert store.list() == []


def test_bad_requests_say_what_to_change_and_a_damaged_record_is_skipped(tmp_path):
    store = Schedules(tmp_path, Clock(at("2026-12-05T10:00:10")))
    for kwargs, said in [
        (dict(notebook={"no": "cells"}), "the notebook's JSON"),
        (dict(timezone="Nowhere"), "an IANA name"),
        (dict(missed="sometimes"), "missed='sometimes'"),
        (dict(workers=0), "workers: a whole number from 1 to 64"),
        (dict(gpus_per_worker=-1), "gpus_per_worker"),
        (dict(cron="every day"), "2 fields"),
    ]:
        args = dict(notebook=NOTEBOOK, cron="* * * * *") | kwargs
        with pytest.raises(ScheduleError, match=said):
            store.create("ana", **args)
    assert store.list() == []  # nothing half-made
    good = store.create("ana", NOTEBOOK, "* * * * *")
    damaged = store.create("ana", NOTEBOOK, "* * * * *")
    (tmp_path / "ana" / damaged["id"] / "schedule.json").write_text('{"id": ')
    assert [s["id"] for s in store.list("ana")] == [good["id"]]
    with pytest.raises(ScheduleError, match="its record is damaged"):
        store.get("ana", damaged["id"])


def test_one_users_schedules_neither_stop_nor_crowd_out_anothers(tmp_path):
    clock = Clock(at("2026-12-05T10:00:10"))
    store = Schedules(tmp_path, clock, max_per_owner=3)
    with pytest.raises(ScheduleError, match="never comes"):  # 30 February
        store.create("eve", NOTEBOOK, "0 0 30 2 *")
    ana = store.create("ana", NOTEBOOK, "* * * * *")["id"]
    # a record the planner cannot take (written as an older version might have): skipped
    eve = store.create("eve", NOTEBOOK, "* * * * *")["id"]
    record = json.loads((tmp_path / "eve" / eve / "schedule.json").read_text())
    record["cron"] = "0 0 30 2 *"
    (tmp_path / "eve" / eve / "schedule.json").write_text(json.dumps(record))
    clock.now += dt.timedelta(minutes=1)
    assert [(s["owner"], r["number"]) for s, r in store.due()] == [("ana", 1)]

    # at most max_per_owner each
    store.create("eve", NOTEBOOK, "* * * * *")
    store.create("eve", NOTEBOOK, "* * * * *")
    with pytest.raises(ScheduleError, match="You have 3 schedules"):
        store.create("eve", NOTEBOOK, "* * * * *")
    # a run still waiting (the owner's quota) gets no second one behind it
    clock.now += dt.timedelta(minutes=2)
    (waiting,) = [r for s, r in store.due() if s["id"] == ana]
    assert waiting["number"] == 1 and waiting["missed_while_waiting"] == 1

    # what runs is the notebook without its outputs, and not a big one
    big = json.loads(json.dumps(NOTEBOOK))
    big["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * 10**6}]
    kept = store.create("ana", big, "0 2 * * *")
    assert store.notebook("ana", kept["id"])["cells"][1]["outputs"] == []
    big["cells"][1]["source"] = "x = '" + "x" * 600_000 + "'"
    with pytest.raises(ScheduleError, match="larger than 512 KB"):
        store.update_notebook("ana", kept["id"], big)


def test_times_missed_while_the_workbench_was_down_run_once_or_are_skipped(tmp_path):
    clock = Clock(at("2026-12-07T09:00:30"))
    store = Schedules(tmp_path, clock)
    once = store.create("sam", NOTEBOOK, "0 * * * *", missed="once")["id"]
    skip = store.create("sam", NOTEBOOK, "0 * * * *", missed="skip")["id"]
    clock.now += dt.timedelta(hours=3, minutes=20)  # down from 09:00 to 12:20
    ((schedule, run),) = store.due()  # 10, 11 and 12 o'clock missed: once runs 12 o'clock
    assert schedule["id"] == once and run["skipped_before"] == 2
    assert run["due"] == "2026-12-07T12:00:00+00:00"
    assert store.get("sam", skip)["runs"] == []
    store.mark("sam", once, 1, state="succeeded")
    clock.now += dt.timedelta(minutes=40)  # 13:00 runs for both
    assert sorted(s["id"] for s, _ in store.due()) == sorted([once, skip])
