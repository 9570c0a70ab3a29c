"""Benchmark: how late a scheduled run starts against its cron time (issue #35).

A real workbench (no Label Studio) whose schedules read their clock from a file
(``Workbench.schedule_clock_file``): one user's ``* * * * *`` schedule of a one-cell notebook;
``--runs`` times the benchmark sets the clock to exactly the next cron time (a whole minute)
and notes the real time it did; the run's record then says when the service submitted its
job (``submitted``) and when the job was first seen running (``started``, the service's
pass every second). Each run ends before the clock moves again (no queueing behind the
owner's job quota). Reported, p50 and p99 over the runs:

- **submitted late**: from the cron time reached to the job submitted (the service's pass
  every second, planning, the job's folder and supervisor);
- **started late**: from the cron time reached to the job seen running.

    .venv/bin/python tests/bench/bench_schedules.py [--runs 60]
    .venv/bin/python tests/busy.py -- .venv/bin/python tests/bench/bench_schedules.py

Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hubforge.atomic import write_text
from tests.workbench import start_workbench

NOTEBOOK = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('ran')")])
SCHEDULES = "services/hubforge/api/schedules"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-schedules-"))
    config = 'c.Workbench.label_studio_python = ""\n'
    config += "c.Workbench.schedule_clock_file = 'schedule-clock'\n"
    wb = start_workbench(folder / "wb", base_url="/", config=config)
    try:
        token = wb.create_user("bench")
        clock = wb.service_dir / "schedule-clock"
        now = (time.time() // 60 + 60) * 60 + 30  # half a minute past, an hour ahead
        write_text(clock, f"{now}\n", mode=0o644)
        body = {"notebook": json.loads(nbformat.writes(NOTEBOOK)), "cron": "* * * * *"}
        r = wb.api("POST", SCHEDULES, token, json=body)
        r.raise_for_status()
        sid = r.json()["id"]
        submitted, started = [], []
        phase = random.Random(0)
        for number in range(1, args.runs + 1):
            # not just after the pass that saw the last run end: a cron time comes at any
            # moment of the service's one-second pass
            time.sleep(phase.random())
            due = (now // 60 + number) * 60  # the next whole minute, exactly
            write_text(clock, f"{due}\n", mode=0o644)
            reached = time.time()
            run = None
            while run is None or not run.get("ended"):
                time.sleep(0.05)
                runs = wb.api("GET", f"{SCHEDULES}/{sid}", token).json()["runs"]
                run = next((r for r in runs if r["number"] == number), None)
            if run["state"] != "succeeded":
                print(f"run {number} {run['state']}: {run.get('reason')}", file=sys.stderr)
                return 1
            submitted.append(run["submitted"] - reached)
            if "started" in run:  # (a run that ended between two passes was never seen running)
                started.append(run["started"] - reached)
            seen = f"started {started[-1]:5.2f} s late" if "started" in run else "ended unseen"
            print(f"run {number:>3}: submitted {submitted[-1]:5.2f} s, {seen}", flush=True)
        print(f"\n{args.runs} runs of a '* * * * *' schedule:")
        print(f"  ({args.runs - len(started)} runs ended before a pass saw them running)")
        for name, values in (("submitted", submitted), ("started", started)):
            print(
                f"  {name} late: p50 {statistics.median(values):.2f} s, "
                f"p99 {percentile(values, 99):.2f} s, max {max(values):.2f} s"
            )
    finally:
        wb.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
