"""Benchmark: hub start-up time and spawn-to-ready time through the REST API.

Run with `make bench` (or `.venv/bin/python tests/bench/bench_startup.py [--runs N]`; on a
busy machine: `.venv/bin/python tests/busy.py -- .venv/bin/python tests/bench/bench_startup.py`).
Each figure is the median of N runs (default 5) on a fresh data folder; the raw runs are
printed too. Not part of the pass/fail suite. The CPU of a start is what the suite pays for
each workbench a test starts: the CPU time of every process `hubforge up` started (the hub,
the proxy, the service, the privileged helper and the children it forked, and `up` itself,
ended ones included), from `up` to the hub answering, without Label Studio.
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

NO_LABEL_STUDIO = 'c.Workbench.label_studio_python = ""\n'


def time_startup(root: Path, i: int):
    t0 = time.perf_counter()
    wb = start_workbench(root / f"start{i}", base_url="/", label_studio=False)
    return time.perf_counter() - t0, wb


def tree_cpu(pid: int) -> float:
    """CPU-s of process ``pid`` and all its descendants, the ended (reaped) ones included."""
    import psutil

    top = psutil.Process(pid)
    total = 0.0
    for proc in [top, *top.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def cpu_of_a_start(root: Path, i: int) -> float:
    """CPU-s that `hubforge up` and what it started spent until the hub answered."""
    wb = start_workbench(root / f"cpu{i}", base_url="/", config=NO_LABEL_STUDIO)
    try:
        return tree_cpu(wb.proc.pid)
    finally:
        wb.down()


def second_start(root: Path) -> tuple[float, float]:
    """A second `hubforge up` of a workbench with Label Studio (the README's figure): seconds
    until the login page answers through the proxy, and until Label Studio answers its API."""
    data = root / "second"
    start_workbench(data, base_url="/hub@forge space/").down()  # the first start
    t0 = time.perf_counter()
    wb = start_workbench(data, base_url="/hub@forge space/")
    try:
        login = time.perf_counter() - t0
        wb.wait_label_studio(time.monotonic() + 600)
        return login, time.perf_counter() - t0
    finally:
        wb.down()


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
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        cpus = [cpu_of_a_start(Path(tmp), i) for i in range(args.runs)]
    print(f"CPU of a start (up and what it started, until the hub answers), {args.runs} runs:")
    print("  runs:   " + ", ".join(f"{c:.2f}" for c in cpus) + " CPU-s")
    print(f"  median: {statistics.median(cpus):.2f} CPU-s")
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        seconds = [second_start(Path(tmp) / str(i)) for i in range(args.runs)]
    print(f"second start with Label Studio (base URL /hub@forge space/), {args.runs} runs:")
    print(
        "  login page: " + ", ".join(f"{a:.2f}" for a, _ in seconds) + " s, median "
        f"{statistics.median(a for a, _ in seconds):.2f} s"
    )
    print(
        "  Label Studio answers: " + ", ".join(f"{b:.2f}" for _, b in seconds) + " s, median "
        f"{statistics.median(b for _, b in seconds):.2f} s"
    )


if __name__ == "__main__":
    main()
