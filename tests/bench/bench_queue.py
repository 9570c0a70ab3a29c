"""Benchmark: 50 one-GPU jobs from 5 users on a workbench configured with 4 GPUs (issue #33).

A real workbench (no Label Studio), ``c.Workbench.gpus`` = 4 devices (handed out through
CUDA_VISIBLE_DEVICES; no hardware needed), 5 users each submitting 10 jobs at once through
the service's REST API with their own token. Each job's script notes when its code started and
ended and on which device, then sleeps ``--seconds``. Reported:

- accepted / refused submits (target: every job accepted, queued when no GPU is free);
- no device ever held by two running jobs;
- **handover**: from a job's end on a device to the next job's code running on it (the
  queue's pass, the supervisor's and the worker's start): median and p90;
- **fair share**: each user's share of the GPU-seconds consumed by the time 25, 50, 75 and
  100 % of the total was, and the worst user's distance from an equal share averaged over
  the run (target: within 10 %).

    .venv/bin/python tests/bench/bench_queue.py [--users 5] [--jobs 10] [--seconds 1]
Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.workbench import start_workbench

SCRIPT = """\
import json, os, time
start = time.time()
time.sleep({seconds})
print("BENCH" + json.dumps({{"start": start, "end": time.time(),
      "device": os.environ.get("CUDA_VISIBLE_DEVICES")}}))
"""
API = "services/hubforge/api/jobs"


def submit_all(wb, tokens: dict[str, str], jobs: int, seconds: float) -> list[tuple[str, str]]:
    """Every user's jobs, the users' submits interleaved as a team's would be."""
    script = SCRIPT.format(seconds=seconds)

    def one(user: str, i: int) -> tuple[str, str, int]:
        body = {"spec": {"name": f"b{i}", "gpus_per_worker": 1}, "script": script}
        r = wb.api("POST", API, tokens[user], json=body)
        return user, (r.json().get("id") if r.status_code == 201 else r.text), r.status_code

    with ThreadPoolExecutor(len(tokens)) as pool:
        done = list(pool.map(lambda a: one(*a), [(u, i) for i in range(jobs) for u in tokens]))
    refused = [(u, text) for u, text, status in done if status != 201]
    if refused:
        print(f"refused: {len(refused)}; first: {refused[0]}")
    return [(u, job) for u, job, status in done if status == 201]


def results(wb, tokens: dict[str, str], submitted: list[tuple[str, str]]) -> list[dict]:
    found = []
    for user, job in submitted:
        record = wb.api("GET", f"{API}/{job}", tokens[user]).json()
        if record["state"] != "succeeded":
            raise RuntimeError(f"{job} of {user}: {record['state']} {record.get('reason')}")
        text = wb.api("GET", f"{API}/{job}/logs/worker-0", tokens[user]).json()["text"]
        line = next(x for x in text.splitlines() if x.startswith("BENCH"))
        found.append({"user": user, "job": job, **json.loads(line.removeprefix("BENCH"))})
    return found


def handovers(runs: list[dict]) -> tuple[list[float], int]:
    """Gaps between consecutive jobs on each device, and how many times two overlapped."""
    gaps, overlaps = [], 0
    for device in {r["device"] for r in runs}:
        on = sorted((r for r in runs if r["device"] == device), key=lambda r: r["start"])
        for before, after in itertools.pairwise(on):
            if after["start"] < before["end"]:
                overlaps += 1
            else:
                gaps.append(after["start"] - before["end"])
    return gaps, overlaps


def shares_at(runs: list[dict], fraction: float) -> dict[str, float]:
    """Each user's share of the GPU-seconds used up to the moment ``fraction`` of all was."""
    total = sum(r["end"] - r["start"] for r in runs)
    lo, hi = min(r["start"] for r in runs), max(r["end"] for r in runs)
    for _ in range(60):  # bisect for that moment
        mid = (lo + hi) / 2
        used = sum(max(0.0, min(r["end"], mid) - r["start"]) for r in runs)
        lo, hi = (mid, hi) if used < total * fraction else (lo, mid)
    per_user: dict[str, float] = {}
    for r in runs:
        used = max(0.0, min(r["end"], hi) - r["start"])
        per_user[r["user"]] = per_user.get(r["user"], 0.0) + used
    spent = sum(per_user.values())
    return {u: v / spent for u, v in sorted(per_user.items())}


def worst_off(shares: dict[str, float]) -> float:
    """How far the user furthest from an equal share is from it, relative to it."""
    fair = 1 / len(shares)
    return max(abs(s - fair) / fair for s in shares.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10, help="jobs per user")
    parser.add_argument("--seconds", type=float, default=1.0, help="each job's length")
    args = parser.parse_args()
    config = (
        'c.Workbench.label_studio_python = ""\n'
        'c.Workbench.gpus = ["0", "1", "2", "3"]\n'
        f"c.Workbench.max_jobs_per_user = {args.jobs}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        data = Path(tmp) / "wb"
        wb = start_workbench(data, config=config)
        try:
            tokens = {f"q{i}": wb.create_user(f"q{i}") for i in range(args.users)}
            began = time.time()
            submitted = submit_all(wb, tokens, args.jobs, args.seconds)
            print(f"accepted {len(submitted)} of {args.users * args.jobs} submits")
            for user, job in submitted:
                deadline = time.monotonic() + 600
                while wb.api("GET", f"{API}/{job}", tokens[user]).json()["state"] in (
                    "queued",
                    "pending",
                    "running",
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{job} did not end")
                    time.sleep(0.5)
            wall = time.time() - began
            runs = results(wb, tokens, submitted)
        finally:
            wb.down()
    gaps, overlaps = handovers(runs)
    gaps.sort()
    ideal = len(runs) * args.seconds / 4
    print(f"all {len(runs)} jobs succeeded in {wall:.1f} s (ideal on 4 GPUs: {ideal:.1f} s)")
    print(f"jobs sharing a device at once: {overlaps}")
    print(
        f"handover (a job's end -> the next job's code on that device): median "
        f"{statistics.median(gaps):.2f} s, p90 {gaps[int(0.9 * (len(gaps) - 1))]:.2f} s, "
        f"max {gaps[-1]:.2f} s over {len(gaps)} handovers"
    )
    for fraction in (0.25, 0.5, 0.75, 1.0):
        shares = shares_at(runs, fraction)
        print(
            f"shares of GPU-seconds when {100 * fraction:.0f} % were used: "
            + ", ".join(f"{u} {100 * s:.1f} %" for u, s in shares.items())
            + f" (worst {100 * worst_off(shares):.1f} % off an equal share)"
        )

    # one job is a fifth of a user's share at the half: the worst user at a single moment is
    # often a job behind; the mean over the run says how fair the order is
    def mean_worst(schedule: list[dict]) -> float:
        return statistics.mean(worst_off(shares_at(schedule, f / 20)) for f in range(2, 19))

    # the same jobs in a perfect round robin (users in turn, 4 at a time, the measured pace):
    # what one job's size alone makes of the measure
    pace = wall / math.ceil(len(runs) / 4)
    users = sorted({r["user"] for r in runs})
    ideal_runs = [
        {"user": users[k % len(users)], "start": (k // 4) * pace, "end": (k // 4) * pace + 1}
        for k in range(len(runs))
    ]
    print(
        f"worst user's distance from an equal share, mean over 10-90 % of the run: "
        f"{100 * mean_worst(runs):.1f} % (a perfect round robin of the same jobs: "
        f"{100 * mean_worst(ideal_runs):.1f} %)"
    )


if __name__ == "__main__":
    main()
