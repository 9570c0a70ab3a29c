"""Benchmark: other callers' latency while one ~10 MB predict runs on the same endpoint.

One endpoint process (the tiny Keras model, y = sum(x)); ``--clients`` callers send one-row
predicts in a loop. Reports their p50/p99/max with no big request (baseline), then while one
predict of ``--rows`` rows (~10 MB of JSON at the default) is in flight, and how long that big
predict took, over ``--rounds`` big requests. Target (issue #30): other callers' p99 during
the big predict within a few times the baseline; before, max ~6 s on a loaded machine.

    .venv/bin/python tests/bench/bench_serving_large.py [--rows 330000] [--clients 4] [--gateway]

``--gateway``: through a workbench's gateway (hub proxy, hubforge service) with a user's token.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.models import keras_model, start_serving
from tests.workbench import start_workbench

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


def small_callers(url: str, clients: int, stop: threading.Event, headers: dict) -> list[float]:
    """Latencies (ms) of one-row predicts from ``clients`` threads until ``stop``."""
    out: list[float] = []

    def loop() -> None:
        with requests.Session() as s:
            s.headers.update(headers)
            while not stop.is_set():
                t0 = time.perf_counter()
                r = s.post(url, json=ROW, timeout=120)
                out.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                time.sleep(0.005)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join()
    return out


def measure(
    url: str, headers: dict, clients: int, during: bytes | None, seconds: float
) -> tuple[list, float]:
    """Small-call latencies for ``seconds`` (or while the ``during`` body is answered) and the
    big call's own seconds."""
    stop, found, big = threading.Event(), [], [0.0]
    runner = threading.Thread(
        target=lambda: found.extend(small_callers(url, clients, stop, headers))
    )
    runner.start()
    time.sleep(0.3)  # callers warm
    found.clear()
    if during is None:
        time.sleep(seconds)
    else:
        t0 = time.perf_counter()
        r = requests.post(url, data=during, headers=headers, timeout=600)
        big[0] = time.perf_counter() - t0
        r.raise_for_status()
    stop.set()
    runner.join()
    return found, big[0]


def summary(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
    return f"n={len(values):4d} p50={q[49]:7.1f} p99={q[98]:7.1f} max={max(values):7.1f} ms"


@contextlib.contextmanager
def direct(tmp: Path) -> Iterator[tuple[str, dict]]:
    """The endpoint process itself: (predict URL, headers)."""
    keras_model(tmp / "m", 1)
    proc, root = start_serving("m", tmp / "m", "--poll", "1")
    try:
        yield root + "/v1/models/m:predict", {}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def gateway(tmp: Path) -> Iterator[tuple[str, dict]]:
    """An endpoint deployed in a workbench, called through its gateway with a user's token."""
    wb = start_workbench(tmp / "wb", base_url="/", config='c.Workbench.label_studio_python = ""\n')
    try:
        token = wb.create_user("bench")
        export = keras_model(wb.data_dir / "hdfs" / "users" / "bench" / "exports", 1)
        body = {"name": "m", "model_dir": str(export)}
        wb.api("POST", "services/hubforge/api/endpoints", token, json=body).raise_for_status()
        url = wb.url + "services/hubforge/endpoints/bench/m/v1/models/m:predict"
        yield url, {"Authorization": f"token {token}"}
    finally:
        wb.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=330_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gateway", action="store_true", help="through a workbench's gateway")
    args = parser.parse_args()
    body = json.dumps({"instances": [[0.123456, 1.5, 2.25, 3.125]] * args.rows}).encode()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hubforge-bench-")))
        url, headers = stack.enter_context((gateway if args.gateway else direct)(tmp))
        where = "through the gateway" if args.gateway else "direct"
        mb = len(body) / 1e6
        print(f"big predict {where}: {args.rows} rows, {mb:.1f} MB; {args.clients} callers")
        requests.post(url, data=body, headers=headers, timeout=600).raise_for_status()
        alone, _ = measure(url, headers, args.clients, None, 3.0)
        print(f"baseline            {summary(alone)}")
        during, bigs = [], []
        for _ in range(args.rounds):
            found, seconds = measure(url, headers, args.clients, body, 0)
            during += found
            bigs.append(seconds)
        print(f"during big predicts {summary(during)}")
        print(f"big predict: {', '.join(f'{s:.2f}' for s in bigs)} s")


if __name__ == "__main__":
    main()
