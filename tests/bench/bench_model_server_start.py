"""Benchmark: how long an endpoint process takes to start, and the CPU it spends doing so.

Each run starts ``python -m hubforge.serving.server`` on TF Serving's own half_plus_two test
model (../shared/fixtures/tfserving) and times the first answer that says the version is
AVAILABLE; the process's CPU seconds (user + system) are read just before it is stopped.
Medians of N runs (default 5); the raw runs are printed too. Every deploy, replica, canary
and restart of an endpoint pays this once.

    .venv/bin/python tests/bench/bench_model_server_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hubforge.processes import free_port

FIXTURES = Path(__file__).resolve().parents[3] / "shared/fixtures/tfserving"
MODEL = FIXTURES / "saved_model_half_plus_two_cpu"


def one_start() -> tuple[float, float]:
    port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    args = ["--model_name=half", f"--model_base_path={MODEL}", f"--rest_api_port={port}"]
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "hubforge.serving.server", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"the model server exited ({server.returncode})")
            try:
                r = requests.get(f"http://127.0.0.1:{port}/v1/models/half", timeout=5)
                states = [v["state"] for v in r.json().get("model_version_status", [])]
                if "AVAILABLE" in states:
                    break
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.02)
        ready = time.perf_counter() - t0
        cpu = psutil.Process(server.pid).cpu_times()
        return ready, cpu.user + cpu.system
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    runs = [one_start() for _ in range(p.parse_args().runs)]
    print("runs (s to AVAILABLE, CPU s):", [(round(w, 2), round(c, 2)) for w, c in runs])
    print(f"start to AVAILABLE: median {statistics.median(w for w, _ in runs):.2f} s")
    print(f"CPU of the start:   median {statistics.median(c for _, c in runs):.2f} s")


if __name__ == "__main__":
    main()
