"""The service's pass over schedules with real jobs of the local backend, without a hub
(#35): a crash between planning a run and recording its job loses and doubles nothing, and
each run keeps its executed notebook (what is missed while the workbench was down: the
unit tests of the planner and the store)."""

from __future__ import annotations

import datetime as dt
import json
import time

import nbformat
import pytest

from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.spec import JobSpec
from hubforge.jobs.tuning import DirectJobs
from hubforge.schedules import Schedules
from hubforge.schedules.executor import job_script
from hubforge.schedules.runs import ScheduledRuns

NOTEBOOK = json.loads(
    nbformat.writes(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print('square', n * n)"),
            ]
        )
    )
)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 7, 9, 0, 30, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def on(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    backend = LocalJobBackend(tmp_path / "data")
    schedules = Schedules(tmp_path / "schedules", clock)
    return clock, backend, schedules, ScheduledRuns(schedules, DirectJobs(backend))


def settle(passes: ScheduledRuns, schedules: Schedules, sid: str, timeout: float = 90) -> list:
    """Passes until every run of ``sid`` has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        passes.run_pass()
        runs = schedules.get("sam", sid)["runs"]
        if runs and all(r.get("ended") for r in runs):
            return runs
        time.sleep(0.3)
    raise AssertionError(f"runs did not end: {schedules.get('sam', sid)['runs']}")


def jobs_of(backend: LocalJobBackend) -> list[str]:
    return sorted(j["id"] for j in backend.list("sam"))


def test_a_crash_after_planning_or_after_submitting_neither_loses_nor_doubles_a_run(world):
    clock, backend, schedules, passes = world
    sid = schedules.create("sam", NOTEBOOK, "*/5 * * * *", params={"n": 7})["id"]

    # crash 1: the run was planned (recorded) and the service died before submitting it
    clock.on(5 * 60)
    assert [r["state"] for _, r in schedules.due()] == ["planned"]
    # crash 2 on the next time: submitted, and the service died before recording it
    runs = settle(ScheduledRuns(schedules, DirectJobs(backend)), schedules, sid)
    assert [(r["number"], r["state"]) for r in runs] == [(1, "succeeded")]
    clock.on(5 * 60)
    ((_, planned),) = schedules.due()
    spec = JobSpec(name="x", params={"n": 7})
    script = job_script(NOTEBOOK, {"n": 7}, "run 2")
    backend.submit("sam", spec, script, job_id=planned["job"])

    runs = settle(passes, schedules, sid)  # a new service: finds the job, submits nothing
    assert [(r["number"], r["state"]) for r in runs] == [(1, "succeeded"), (2, "succeeded")]
    assert jobs_of(backend) == [f"{sid}-r1", f"{sid}-r2"]
    for run in runs:
        nb = nbformat.read(run["executed_notebook"], as_version=4)
        assert "square 49" in json.dumps(nb.cells[-1]["outputs"])
    passes.run_pass()
    assert jobs_of(backend) == [f"{sid}-r1", f"{sid}-r2"]
