"""Benchmark: TensorBoard through the workbench versus standalone TensorBoard on a direct port.

In one run, on the same log dir: time from open() (REST call to the user's server) to the first
scalar JSON served through the hub's proxy, cold and warm, against a standalone TensorBoard
started by hand and polled on its own port; then p50/p99 latency of the scalars request through
our path versus direct. Targets: first scalar <= 1.2x standalone; added p50 <= 4 ms.

    .venv/bin/python tests/bench/bench_tensorboard.py [--requests 300]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.logs import write_logs
from tests.workbench import free_port, start_workbench

SCALARS = "data/plugin/scalars/scalars?run=train&tag=epoch_loss"


def poll(url: str, session: requests.Session, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if session.get(url, timeout=10).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} never answered")


def standalone(logdir: Path) -> tuple[float, subprocess.Popen, str]:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    poll(url + SCALARS, requests.Session())
    return time.perf_counter() - start, proc, url


def ours(wb, token: str, origin: str) -> tuple[float, str, str]:
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    start = time.perf_counter()
    r = session.post(wb.url + "user/bench/hubforge/api/tensorboards", json={"logdir": "logs"})
    r.raise_for_status()
    url = origin + r.json()["url"]
    poll(url + SCALARS, session)
    return time.perf_counter() - start, url, r.json()["name"]


def latencies(url: str, n: int, token: str | None = None) -> list[float]:
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"token {token}"
    session.get(url)  # connection and caches warm
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert session.get(url, timeout=10).status_code == 200
        times.append((time.perf_counter() - t0) * 1000)
    return times


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        wb = start_workbench(Path(tmp) / "wb", base_url="/")
        try:
            token = wb.create_user("bench")
            assert wb.spawn("bench", token).status_code in (201, 202)
            logdir = write_logs(wb.data_dir / "homes" / "bench" / "logs")
            origin = re.match(r"https?://[^/]+", wb.url).group(0)
            results = {}
            for phase in ("cold", "warm"):
                t_alone, proc, direct = standalone(logdir)
                t_ours, proxied, name = ours(wb, token, origin)
                results[phase] = (t_alone, t_ours)
                if phase == "warm":
                    direct_ms = latencies(direct + SCALARS, args.requests)
                    proxied_ms = latencies(proxied + SCALARS, args.requests, token)
                proc.terminate()
                proc.wait()
                requests.delete(
                    wb.url + f"user/bench/hubforge/api/tensorboards/{name}",
                    headers={"Authorization": f"token {token}"},
                    timeout=30,
                )
        finally:
            wb.down()
    for phase, (alone, mine) in results.items():
        print(
            f"first scalar ({phase}): standalone {alone:.2f} s, hubforge {mine:.2f} s, "
            f"ratio {mine / alone:.2f}"
        )
    p50d, p99d = pct(direct_ms, 50), pct(direct_ms, 99)
    p50p, p99p = pct(proxied_ms, 50), pct(proxied_ms, 99)
    print(
        f"scalars request, {args.requests} sequential: direct p50 {p50d:.2f} ms p99 "
        f"{p99d:.2f} ms; through hub + server proxy p50 {p50p:.2f} ms p99 {p99p:.2f} ms"
    )
    print(f"added p50 latency: {p50p - p50d:+.2f} ms")


if __name__ == "__main__":
    main()
