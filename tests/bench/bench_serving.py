"""Benchmark: predict latency through the gateway, directly, and in-process; throughput with
batching on and off.

In one run on the same tiny Keras model: p50/p99 of a one-row predict through the hub gateway,
directly on the serving process, and the model called in-process; then requests per second at
1, 8 and 32 concurrent clients (direct, batching off and on), on the tiny model and on a
wide memory-bound one. Targets: direct p50 <= in-process
p50 + 1 ms; gateway adds <= 1 ms at p50; batching >= 3x throughput at 32 clients.

    .venv/bin/python tests/bench/bench_serving.py [--requests 300] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.models import keras_model, start_serving
from tests.workbench import start_workbench

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
# A wide model, memory-bound like embedding or recommendation models: one row costs nearly
# as much as 32 (the weights are read once per call), which is where batching pays.
WIDE = """
import sys, tensorflow as tf
inputs = tf.keras.Input((4,))
x = inputs
for _ in range(4):
    x = tf.keras.layers.Dense(4096, activation="relu")(x)
tf.keras.Model(inputs, tf.keras.layers.Dense(1)(x)).save(sys.argv[1] + "/1")
"""


def wide_model(base: Path) -> Path:
    subprocess.run(
        [sys.executable, "-c", WIDE, str(base)],
        check=True,
        capture_output=True,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return base


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def timed(call, n: int) -> list[float]:
    call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def serve(base: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc, url = start_serving("m", base, *extra)
    return proc, url + "/v1/models/m:predict"


def throughput(url: str, clients: int, seconds: float) -> float:
    """Requests per second from ``clients`` concurrent keep-alive clients (asyncio, so the
    load generator's own CPU stays small next to the server's)."""

    async def run() -> int:
        done = 0
        deadline = time.perf_counter() + seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def client() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    async with session.post(url, json=ROW) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    done += 1

            await asyncio.gather(*(client() for _ in range(clients)))
        return done

    t0 = time.perf_counter()
    done = asyncio.run(run())
    return done / (time.perf_counter() - t0)


def in_process(base: Path, n: int) -> list[float]:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    from hubforge.serving.repository import ModelRepository

    repo = ModelRepository("m", base)
    repo.refresh()
    signature = repo.resolve().signature(None)
    name = next(iter(signature.inputs))
    return timed(lambda: signature.run({name: ROW["instances"]}), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        wb = start_workbench(Path(tmp) / "wb", base_url="/")
        try:
            token = wb.create_user("bench")
            export = keras_model(wb.data_dir / "hdfs" / "users" / "bench" / "exports", 1)
            r = wb.api(
                "POST",
                "services/hubforge/api/endpoints",
                token,
                json={"name": "m", "model_dir": str(export)},
            )
            r.raise_for_status()
            base = Path(r.json()["base_path"])
            gateway = wb.url + "services/hubforge/endpoints/bench/m/v1/models/m:predict"
            session = requests.Session()
            session.headers["Authorization"] = f"token {token}"
            gw = timed(lambda: session.post(gateway, json=ROW).raise_for_status(), args.requests)
            # the same gateway without the hub's proxy in front (where the time goes)
            service = wb.api("GET", "hub/api/services/hubforge", wb.admin_token()).json()["url"]
            behind = (
                f"{service.rstrip('/')}/services/hubforge/endpoints/bench/m/v1/models/m:predict"
            )
            gw_service = timed(
                lambda: session.post(behind, json=ROW).raise_for_status(), args.requests
            )
            plain, batched = (
                serve(base),
                serve(base, "--max-batch-size", "32", "--batch-timeout-ms", "2"),
            )
            direct_session = requests.Session()
            direct = timed(
                lambda: direct_session.post(plain[1], json=ROW).raise_for_status(), args.requests
            )
            local = in_process(base, args.requests)
            rates = {
                (c, mode): throughput(url, c, args.seconds)
                for c in (1, 8, 32)
                for mode, url in (("off", plain[1]), ("on", batched[1]))
            }
            for proc, _ in (plain, batched):
                proc.terminate()
            wide = wide_model(Path(tmp) / "wide")
            plain, batched = (
                serve(wide),
                serve(wide, "--max-batch-size", "32", "--batch-timeout-ms", "2"),
            )
            wide_rates = {
                (c, mode): throughput(url, c, args.seconds)
                for c in (1, 8, 32)
                for mode, url in (("off", plain[1]), ("on", batched[1]))
            }
            for proc, _ in (plain, batched):
                proc.terminate()
        finally:
            wb.down()
    rows = (
        ("in-process", local),
        ("direct", direct),
        ("gateway", gw),
        ("gateway without the hub proxy", gw_service),
    )
    for label, values in rows:
        print(f"{label:30} p50 {pct(values, 50):6.2f} ms  p99 {pct(values, 99):6.2f} ms")
    print(
        f"direct - in-process p50: {pct(direct, 50) - pct(local, 50):+.2f} ms; "
        f"gateway - direct p50: {pct(gw, 50) - pct(direct, 50):+.2f} ms "
        f"(service alone: {pct(gw_service, 50) - pct(direct, 50):+.2f} ms, "
        f"hub proxy: {pct(gw, 50) - pct(gw_service, 50):+.2f} ms)"
    )
    for title, table in (
        ("tiny model (4 -> 1)", rates),
        ("wide model (4 x Dense 4096, memory-bound)", wide_rates),
    ):
        print(title)
        for c in sorted({c for c, _ in table}):
            off, on = table[(c, "off")], table[(c, "on")]
            print(
                f"  {c:2} clients: batching off {off:7.1f} req/s, on {on:7.1f} req/s "
                f"({on / off:.2f}x)"
            )


if __name__ == "__main__":
    main()
