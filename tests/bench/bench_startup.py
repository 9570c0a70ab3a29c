"""Benchmark: hub start-up time and spawn-to-ready time through the REST API.

Run with `make bench` (or `.venv/bin/python tests/bench/bench_startup.py [--runs N]`).
Each figure is the median of N runs (default 5) on a fresh data folder; the raw runs are
printed too. Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.workbench import start_workbench


def time_startup(root: Path, i: int):
    t0 = time.perf_counter()
    wb = start_workbench(root / f"start{i}", base_url="/", label_studio=False)
    return time.perf_counter() - t0, wb


def time_spawn(wb, name: str, token: str) -> float:
    t0 = time.perf_counter()
    r = wb.spawn(name, token, profile="cpu")
    assert r.status_code in (201, 202), r.text
    elapsed = time.perf_counter() - t0
    wb.stop_server(name, token)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        root = Path(tmp)
        starts, spawns = [], []
        for i in range(args.runs):
            elapsed, wb = time_startup(root, i)
            starts.append(elapsed)
            if i < args.runs - 1:
                wb.down()
        token = wb.create_user("bench")
        time_spawn(wb, "bench", token)  # first spawn warms the OS file cache
        spawns = [time_spawn(wb, "bench", token) for _ in range(args.runs)]
        wb.down()
    print(f"hub start-up (hubforge up -> hub answers through the proxy), {args.runs} runs:")
    print("  runs:   " + ", ".join(f"{s:.2f}" for s in starts) + " s")
    print(f"  median: {statistics.median(starts):.2f} s")
    print(f"spawn-to-ready (POST /hub/api/users/NAME/server -> ready), {args.runs} runs:")
    print("  runs:   " + ", ".join(f"{s:.2f}" for s in spawns) + " s")
    print(f"  median: {statistics.median(spawns):.2f} s")


if __name__ == "__main__":
    main()
