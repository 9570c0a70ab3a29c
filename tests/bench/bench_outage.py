"""Benchmark: an endpoint's callers while the hub, then the proxy, is killed (kill -9).

A workbench without Label Studio, one user's endpoint (the tiny Keras model), ``--clients``
callers sending predicts through the public URL as fast as it answers. Each run kills the hub
(`up` starts it again) or the proxy, keeps calling until the workbench has been back for 3 s,
and reports the calls, the failed calls, the outage (first to last failed call) and what the
failures were. Target (issue #30): no failed call while the hub restarts; the proxy's
restart short, its failures a closed port or JSON in TF Serving's error shape.

    .venv/bin/python tests/bench/bench_outage.py [--clients 8] [--runs 3]
Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hubforge.processes import workbench_processes
from tests.callers import Callers, wait_for
from tests.workbench import start_workbench

ROWS = {"instances": [[1, 2, 3, 4]]}
PREDICTED = {"predictions": [[11.0]]}
GATEWAY = "services/hubforge/endpoints/sam/clf/v1/models/clf:predict"


def hub_pid(data: Path) -> int:
    return json.loads((data / "state" / "hubforge.json").read_text())["hub_pid"]


def proxy_pid(data: Path) -> int | None:
    for proc in workbench_processes(str(data)):
        try:
            if "configurable-http-proxy" in " ".join(proc.cmdline()):
                return proc.pid
        except psutil.Error:
            continue
    return None


def kill_hub(wb, data: Path) -> None:
    backs = wb.log.read_text().count("The hub is back")
    crashed = hub_pid(data)
    os.kill(crashed, signal.SIGKILL)
    wait_for(lambda: wb.log.read_text().count("The hub is back") > backs, 300, "the hub")


def kill_proxy(wb, data: Path) -> None:
    crashed = proxy_pid(data)
    assert crashed is not None, "no proxy found"
    os.kill(crashed, signal.SIGKILL)
    wait_for(lambda: proxy_pid(data) not in (None, crashed), 120, "a new proxy")


def run(wb, data: Path, token: str, kill, clients: int) -> dict:
    with Callers(wb.url + GATEWAY, token, clients, ROWS, PREDICTED) as callers:
        start = time.monotonic()
        kill(wb, data)
        wait_for(lambda: callers.since_last_failure(start) > 3, 300, "calls to succeed again")
    kinds = collections.Counter(what.split(":")[0][:70] for _, what in callers.failed())
    return {
        "calls": len(callers.answers),
        "failed": len(callers.failed()),
        "outage_s": round(callers.outage(), 2),
        "kinds": dict(kinds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        data = Path(tmp) / "wb"
        wb = start_workbench(data, config='c.Workbench.label_studio_python = ""\n')
        try:
            token = wb.create_user("sam")
            wb.deploy_sum_model(token, "sam")

            def ready() -> bool:
                return wb.api("POST", GATEWAY, token, json=ROWS).status_code == 200

            wait_for(ready, 120, "the endpoint")
            for name, kill in (("hub", kill_hub), ("proxy", kill_proxy)):
                for i in range(args.runs):
                    result = run(wb, data, token, kill, args.clients)
                    print(f"{name} kill -9, run {i + 1}: {json.dumps(result)}", flush=True)
        finally:
            wb.down()


if __name__ == "__main__":
    main()
