"""Benchmark: a 2-worker job through `hubforge.jobs` versus the same workers started by hand.

Same script, same generated data, same machine, alternating runs. Reports the median total
wall time (start -> both workers done) and the median time from start to the first training
step (read from the chief's progress record). Targets: ratio <= 1.10, first step <= 2 s later.

    .venv/bin/python tests/bench/bench_jobs.py [--runs 3] [--epochs 5] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = """\
import numpy as np
import tensorflow as tf
from hubforge import distribute
epochs, steps = {epochs}, {steps}
strategy = distribute.strategy()
x = np.random.RandomState(0).rand(4096, 32).astype("float32")
y = (x.sum(axis=1) > 16).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(distribute.global_batch_size(64))
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(64, activation="relu", input_shape=(32,)),
                                 tf.keras.layers.Dense(64, activation="relu"),
                                 tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0,
          callbacks=distribute.callbacks(tensorboard=False, backup=False))
model.save(distribute.export_dir())
"""


def first_step(progress: Path) -> float:
    for line in progress.read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "step":
            return record["time"]
    raise RuntimeError("no step recorded")


def by_hand(script: Path, work: Path) -> tuple[float, float]:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    start = time.time()
    procs = []
    for i in range(2):
        env = dict(
            os.environ,
            TF_USE_LEGACY_KERAS="1",
            HUBFORGE_JOB_DIR=str(work),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    assert all(p.wait() == 0 for p in procs)
    return time.time() - start, first_step(work / "progress.jsonl") - start


def through_hubforge(script: Path) -> tuple[float, float]:
    from hubforge.jobs import submit  # imported before the clock starts, as in a notebook

    start = time.time()
    job = submit(script, workers=2)
    assert job.wait(poll=0.25) == "succeeded", job.reason
    total = time.time() - start
    return total, first_step(Path(job.artifacts["job_dir"]) / "progress.jsonl") - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubforge-bench-") as tmp:
        root = Path(tmp)
        os.environ.update(HOME=str(root), HUBFORGE_DATA=str(root / "data"))
        for var in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN"):
            os.environ.pop(var, None)
        script = root / "train.py"
        script.write_text(SCRIPT.format(epochs=args.epochs, steps=args.steps))
        hand, ours = [], []
        for i in range(args.runs):
            hand.append(by_hand(script, root / f"hand{i}"))
            ours.append(through_hubforge(script))
    med = {
        name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        for name, runs in (("by hand", hand), ("hubforge", ours))
    }
    for name, runs in (("by hand", hand), ("hubforge", ours)):
        print(
            f"{name:9} total: "
            + ", ".join(f"{t:.2f}" for t, _ in runs)
            + f" s (median {med[name][0]:.2f}); first step: "
            + ", ".join(f"{f:.2f}" for _, f in runs)
            + f" s (median {med[name][1]:.2f})"
        )
    print(f"ratio total hubforge / by hand: {med['hubforge'][0] / med['by hand'][0]:.3f}")
    print(f"first step later by: {med['hubforge'][1] - med['by hand'][1]:+.2f} s")


if __name__ == "__main__":
    main()
