"""Benchmark: what per-user OS accounts cost (Workbench.isolation 'accounts' vs 'none').

Run as root: `.venv/bin/python tests/bench/bench_isolation.py [--runs N]`. For each mode, on
a fresh workbench without Label Studio: the first spawn of a new user (it makes the OS
account), then N spawn-to-ready times, then N jobs from submit to succeeded (a one-line
script, so the figure is the overhead of starting a job, not training). Medians and the
ratio accounts/none are printed; the issue's bar is within 10 %. Not part of the suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hubforge import accounts
from tests.workbench import start_workbench

JOBS = "services/hubforge/api/jobs"


def spawn(wb, name: str, token: str) -> float:
    t0 = time.perf_counter()
    r = wb.spawn(name, token, profile="cpu")
    assert r.status_code in (201, 202), r.text
    elapsed = time.perf_counter() - t0
    wb.stop_server(name, token)
    return elapsed


def job(wb, token: str) -> float:
    t0 = time.perf_counter()
    r = wb.api("POST", JOBS, token, json={"script": "print(1)", "spec": {"name": "bench"}})
    assert r.status_code == 201, r.text
    while (state := wb.api("GET", f"{JOBS}/{r.json()['id']}", token).json()["state"]) not in (
        "succeeded",
        "failed",
    ):
        time.sleep(0.05)
    assert state == "succeeded", state
    return time.perf_counter() - t0


def measure(mode: str, runs: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="hubforge-bench-iso-", dir="/tmp"))
    folder.chmod(0o755)  # every account passes through (mkdtemp makes it 0700)
    user = f"bench-{mode}"
    try:
        config = f'c.Workbench.isolation = "{mode}"\nc.Workbench.label_studio_python = ""\n'
        wb = start_workbench(folder / "wb", base_url="/", config=config, label_studio=False)
        state = wb.state_dir
        try:
            token = wb.create_user(user)
            first = spawn(wb, user, token)
            spawns = [spawn(wb, user, token) for _ in range(runs)]
            job(wb, token)  # warms the OS file cache for TensorFlow's first import
            jobs = [job(wb, token) for _ in range(runs)]
        finally:
            wb.down()
    finally:
        if mode == "accounts":
            subprocess.run(["userdel", accounts.account_name(user, state)], capture_output=True)
            subprocess.run(["groupdel", accounts.group_name(state)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return {"first spawn": [first], "spawn-to-ready": spawns, "job submit-to-succeeded": jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("Run as root: per-user OS accounts need it")
    results = {mode: measure(mode, args.runs) for mode in ("none", "accounts")}
    for figure in results["none"]:
        none, acc = (statistics.median(results[m][figure]) for m in ("none", "accounts"))
        print(f"{figure} ({len(results['none'][figure])} run(s)):")
        for mode in ("none", "accounts"):
            runs = ", ".join(f"{s:.2f}" for s in results[mode][figure])
            print(f"  {mode:9s} median {statistics.median(results[mode][figure]):.2f} s  [{runs}]")
        print(f"  accounts/none: {acc / none:.2f}")


if __name__ == "__main__":
    main()
