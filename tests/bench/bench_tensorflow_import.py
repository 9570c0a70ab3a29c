"""Benchmark: the CPU a process spends importing TensorFlow, as Hubforge's processes do.

Each case runs in a fresh interpreter and prints the CPU seconds (user + system) of its
imports; medians of N runs (default 5), the cases interleaved so that a machine that slows
down meanwhile slows every case alike:

* ``ml_dtypes``: the dtype package every TensorFlow import loads (0.7.0 spent ~0.6 s here;
  pyproject keeps it below 0.7);
* ``job``: ``import tensorflow`` and a ``tf.keras`` layer with ``TF_USE_LEGACY_KERAS=1``,
  as a job's worker, a kernel and an endpoint's environment have it;
* ``keras3`` and ``keras3-deferred``: TensorFlow with Keras 3 (what keras-tuner's oracle
  and ``import keras`` load), without and with :func:`hubforge.deferred_imports.defer`.

    .venv/bin/python tests/bench/bench_tensorflow_import.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

PROBE = """
import os, time
exec(os.environ.get("BENCH_BEFORE", ""))  # not counted
start = time.process_time()
if os.environ.get("BENCH_DEFER"):
    from hubforge import deferred_imports
    deferred_imports.defer()
exec(os.environ["BENCH_IMPORT"])
print(time.process_time() - start)
"""

CASES = {
    "ml_dtypes": ("import ml_dtypes", {"BENCH_BEFORE": "import numpy"}),
    "job": (
        "import tensorflow as tf; tf.keras.layers.Dense(1)",
        {"TF_USE_LEGACY_KERAS": "1"},
    ),
    "keras3": ("import tensorflow, keras", {}),
    "keras3-deferred": ("import tensorflow, keras", {"BENCH_DEFER": "1"}),
}


def one(case: str) -> float:
    statement, extra = CASES[case]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "BENCH_DEFER")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", BENCH_IMPORT=statement, **extra)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    runs = p.parse_args().runs
    results: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(runs):
        for case in CASES:
            results[case].append(one(case))
    import ml_dtypes

    print(f"ml_dtypes {ml_dtypes.__version__}; CPU seconds of the imports, median of {runs}:")
    for case, values in results.items():
        print(f"  {case:16s} {statistics.median(values):5.2f} s   {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main()
