"""Benchmark: the workbench on a busy machine, and the gateway while the service restarts.

Run with `make bench` (or `.venv/bin/python tests/bench/bench_dependability.py [--runs N]`).

1. `hubforge up` on a fresh data folder (Label Studio on, its first start migrating a new
   database) while two CPU-bound processes run, N tries: the time until the login page
   answers, whether a user can log in and spawn a server, and when Label Studio is ready.
2. Gateway outage while the hubforge service restarts (kill -9 of the service process), N
   tries: the time from the kill until an endpoint answers through the gateway again, with a
   caller sending requests the whole time.
Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.test_service_faults import service_app
from tests.workbench import start_workbench


def burn(stop: multiprocessing.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x += i * i


def busy_start(root: Path, i: int, wait_label_studio: bool) -> dict[str, float | bool]:
    t0 = time.perf_counter()
    wb = start_workbench(root / f"busy{i}", base_url="/", label_studio=False)
    try:
        login = None
        while login is None or login.status_code != 200:
            login = requests.get(wb.url + "hub/login", timeout=30)
        to_login = time.perf_counter() - t0
        token = wb.create_user("ann")
        spawned = wb.spawn("ann", token).status_code in (201, 202)
        to_spawn = time.perf_counter() - t0
        to_label_studio = None
        if wait_label_studio:  # else `down` stops it mid-migration: the next try starts afresh
            wb.wait_label_studio(time.monotonic() + 900)
            to_label_studio = time.perf_counter() - t0
    finally:
        wb.down()
    return {"login": to_login, "spawn_ok": spawned, "spawn": to_spawn, "ls": to_label_studio}


def outage(wb, token: str) -> float:
    gateway = wb.url + "services/hubforge/endpoints/ann/clf/v1/models/clf:predict"
    headers = {"Authorization": f"token {token}"}

    def ok() -> bool:
        with contextlib.suppress(requests.RequestException):
            r = requests.post(gateway, json={"instances": [[1, 2, 3, 4]]}, headers=headers)
            return r.status_code == 200
        return False

    assert ok()
    service_app(wb).kill()
    t0 = time.perf_counter()
    while not ok():
        time.sleep(0.05)
    return time.perf_counter() - t0


def report_busy(runs: list[dict]) -> None:
    print(f"hubforge up on a fresh data folder with 2 CPU-bound processes, {len(runs)} tries:")
    print(f"  login page and spawn worked: {sum(bool(r['spawn_ok']) for r in runs)}/{len(runs)}")
    summary("to login page", [float(r["login"]) for r in runs])
    summary("to a spawned server", [float(r["spawn"]) for r in runs])
    summary("to Label Studio ready", [float(r["ls"]) for r in runs if r["ls"] is not None])


def summary(name: str, values: list[float]) -> None:
    print(f"  {name}: " + ", ".join(f"{v:.1f}" for v in values) + " s")
    print(f"    median {statistics.median(values):.1f} s, worst {max(values):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--outages", type=int, default=5)
    parser.add_argument(
        "--ls-tries", type=int, default=3, help="tries that also wait for Label Studio"
    )
    args = parser.parse_args()
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(2)]
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        root = Path(tmp)
        for b in burners:
            b.start()
        try:
            runs = [busy_start(root, i, i < args.ls_tries) for i in range(args.runs)]
        finally:
            stop.set()
            for b in burners:
                b.join()
        if runs:
            report_busy(runs)

        wb = start_workbench(
            root / "outage", base_url="/", config='c.Workbench.label_studio_python = ""\n'
        )
        try:
            token = wb.create_user("ann")
            wb.deploy_sum_model(token, "ann")
            gaps = []
            for _ in range(args.outages):
                gaps.append(outage(wb, token))
                time.sleep(15)  # a healthy run between crashes (crashes in a row back off)
        finally:
            wb.down()
    print(f"gateway outage while the service restarts (kill -9), {args.outages} tries:")
    summary("outage", gaps)


if __name__ == "__main__":
    main()
