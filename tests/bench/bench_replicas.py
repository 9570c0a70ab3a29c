"""Benchmark: an endpoint with 1 and with 3 copies through the hub's gateway (#36).

For each number of copies: requests per second and p50/p99 latency at 16 and 64 concurrent
keep-alive clients through the hub's proxy and the service's gateway (what applications
call); then, with 3 copies and 64 clients, one copy killed with kill -9: the calls that
failed meanwhile and how long until 3 copies serve again.

    .venv/bin/python tests/bench/bench_replicas.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.models import keras_model
from tests.workbench import start_workbench

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
API = "services/hubforge/api/endpoints"


def load(url: str, token: str, clients: int, seconds: float, during=None) -> dict:
    """``clients`` concurrent clients for ``seconds``; ``during()`` runs in a thread after a
    third of the time. Requests per second, p50/p99 in ms, outcomes by status."""
    latencies: list[float] = []
    outcomes: Counter = Counter()

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        headers = {"Authorization": f"token {token}"}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def client() -> None:
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    try:
                        async with session.post(url, json=ROW) as r:
                            await r.read()
                            outcomes[str(r.status)] += 1
                    except aiohttp.ClientError as e:
                        outcomes[type(e).__name__] += 1
                    latencies.append((time.perf_counter() - t0) * 1000)

            await asyncio.gather(*(client() for _ in range(clients)))

    if during is not None:
        timer = threading.Timer(seconds / 3, during)
        timer.start()
    t0 = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / elapsed,
        "p50": q[49],
        "p99": q[98],
        "outcomes": dict(outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results, kill = {}, {}
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        wb = start_workbench(Path(tmp) / "wb", base_url="/", label_studio=False)
        try:
            token = wb.create_user("bench")
            export = keras_model(wb.data_dir / "hdfs" / "users" / "bench" / "exports", 1)
            gateway = wb.url + "services/hubforge/endpoints/bench/m/v1/models/m:predict"
            for copies in (1, 3):
                body = {"name": "m", "model_dir": str(export), "replicas": copies}
                wb.api("POST", API, token, json=body).raise_for_status()
                time.sleep(12)  # copies handed over from stop (10 s after a redeploy)
                load(gateway, token, 16, 2)  # warm-up
                for clients in (16, 64):
                    results[(copies, clients)] = load(gateway, token, clients, args.seconds)
            record = wb.api("GET", f"{API}/m", token).json()
            victim = record["processes"][1]["pid"]
            killed: list[float] = []

            def kill_one() -> None:
                killed.append(time.monotonic())
                os.kill(victim, signal.SIGKILL)

            kill["load"] = load(gateway, token, 64, args.seconds, during=kill_one)
            while True:
                now = wb.api("GET", f"{API}/m", token).json()
                pids = {p["pid"] for p in now["processes"] if p["running"]}
                if now["ready"] == 3 and victim not in pids:
                    kill["back_s"] = time.monotonic() - killed[0]
                    break
                assert time.monotonic() - killed[0] < 120, now
                time.sleep(0.2)
        finally:
            wb.down()
    print(
        f"{os.cpu_count()} CPUs; a one-row predict of a tiny Keras model, {args.seconds:.0f} s each"
    )
    for (copies, clients), r in sorted(results.items()):
        print(
            f"{copies} cop{'y' if copies == 1 else 'ies'}, {clients:2} clients: "
            f"{r['rps']:7.1f} req/s  p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
            f"{r['outcomes']}"
        )
    r = kill["load"]
    failed = sum(n for k, n in r["outcomes"].items() if k != "200")
    print(
        f"kill -9 of 1 of 3 copies at 64 clients: {failed} failed of "
        f"{sum(r['outcomes'].values())} ({r['outcomes']}), {r['rps']:.1f} req/s, p99 "
        f"{r['p99']:.1f} ms; 3 copies serving again after {kill['back_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
