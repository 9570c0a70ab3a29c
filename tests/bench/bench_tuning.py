"""Benchmark: a hyper-parameter search through the hubforge service (issue #34).

A real workbench (no Label Studio); one user's search of a Keras notebook over a fixed
generated data set (two interleaved spirals, 600 points, seed 0): ``--trials`` trials,
``--parallel`` at a time, keras-tuner's ``--algorithm``, each trial a job. Each trial's
script notes when its own code started and ended. Reported:

- **search overhead per trial**: from the end of the trial that freed a slot to the next
  trial's first line running (the service's pass every second, keras-tuner's answer, the
  job's supervisor and Python start; not the trial's own TensorFlow import): median, p90;
- **accuracy**: the best validation accuracy the search reached, against the same notebook
  run once as a job with its default parameters.

    .venv/bin/python tests/bench/bench_tuning.py [--trials 10] [--parallel 2] [--algorithm bayesian]
Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.workbench import start_workbench

PARAMETERS = "learning_rate = 0.001\nunits = 4\nepochs = 15"
TRAIN = """\
import json, time
_start = time.time()
import numpy as np
import tensorflow as tf
from hubforge import distribute

rng = np.random.default_rng(0)  # the same data for every trial
t = rng.uniform(0.5, 3 * np.pi, 600)
label = rng.integers(0, 2, 600)
x = np.stack([t * np.cos(t + np.pi * label), t * np.sin(t + np.pi * label)], 1)
x = (x + rng.normal(0, 0.3, x.shape)).astype("float32") / 10
tf.keras.utils.set_random_seed(1)
model = tf.keras.Sequential([
    tf.keras.Input((2,)),
    tf.keras.layers.Dense(units, activation="relu"),
    tf.keras.layers.Dense(units, activation="relu"),
    tf.keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(tf.keras.optimizers.Adam(learning_rate), "binary_crossentropy", ["accuracy"])
model.fit(x[:480], label[:480], validation_data=(x[480:], label[480:]), epochs=epochs,
          batch_size=32, verbose=0, callbacks=distribute.callbacks(tensorboard=False))
print("BENCH" + json.dumps({"start": _start, "end": time.time()}))
"""
SPACE = {"learning_rate": {"min": 1e-4, "max": 0.1, "log": True}, "units": [4, 8, 16, 32, 64]}
JOBS, TUNINGS = "services/hubforge/api/jobs", "services/hubforge/api/tunings"


def notebook() -> dict:
    nb = new_notebook(
        cells=[new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}), new_code_cell(TRAIN)]
    )
    return json.loads(nbformat.writes(nb))


def times(wb, token: str, job_id: str) -> dict:
    text = wb.api("GET", f"{JOBS}/{job_id}/logs/worker-0", token).json()["text"]
    line = next(x for x in text.splitlines() if x.startswith("BENCH"))
    return json.loads(line.removeprefix("BENCH"))


def wait_job(wb, token: str, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while (job := wb.api("GET", f"{JOBS}/{job_id}", token).json())["state"] not in (
        "succeeded", "failed", "cancelled"
    ):  # fmt: skip
        if time.monotonic() > deadline:
            raise TimeoutError(job_id)
        time.sleep(1)
    return job


def default_accuracy(wb, token: str) -> float:
    """The notebook as it is, run once as a job: its best validation accuracy."""
    from hubforge.jobs.convert import to_script

    script = to_script(nbformat.reads(json.dumps(notebook()), as_version=4))
    r = wb.api("POST", JOBS, token, json={"spec": {"name": "defaults"}, "script": script})
    job = wait_job(wb, token, r.json()["id"])
    assert job["state"] == "succeeded", job
    history = wb.api("GET", f"{JOBS}/{job['id']}/progress", token).json()["history"]
    return max(h["val_accuracy"] for h in history)


def search(wb, token: str, args: argparse.Namespace) -> tuple[dict, float]:
    body = {
        "notebook": notebook(),
        "space": SPACE,
        "objective": "val_accuracy",
        "max_trials": args.trials,
        "parallel": args.parallel,
        "algorithm": args.algorithm,
        "name": "bench",
    }
    started = time.monotonic()
    r = wb.api("POST", TUNINGS, token, json=body)
    assert r.status_code == 201, r.text
    path = f"{TUNINGS}/{r.json()['id']}"
    while (run := wb.api("GET", path, token).json())["state"] == "running":
        time.sleep(1)
    return run, time.monotonic() - started


def overheads(spans: list[dict]) -> list[float]:
    """For each trial after the first ``parallel`` ones: from the latest end of a trial
    before its start (the slot it took) to its code running."""
    spans = sorted(spans, key=lambda s: s["start"])
    gaps = []
    for span in spans:
        ended = [s["end"] for s in spans if s["end"] <= span["start"]]
        if ended:
            gaps.append(span["start"] - max(ended))
    return gaps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--algorithm", default="bayesian")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    wb = start_workbench(data, config='c.Workbench.label_studio_python = ""\n')
    try:
        token = wb.create_user("tuner-tina")
        baseline = default_accuracy(wb, token)
        run, took = search(wb, token, args)
        done = [t for t in run["trials"] if t["state"] == "succeeded"]
        gaps = overheads([times(wb, token, t["job"]) for t in done])
        best = max(t["objective"] for t in done)
        print(f"search: {run['state']}, {len(done)}/{len(run['trials'])} trials succeeded "
              f"in {took:.0f} s ({args.algorithm}, {args.parallel} at a time)")  # fmt: skip
        if gaps:
            p90 = statistics.quantiles(gaps, n=10)[-1] if len(gaps) > 1 else gaps[0]
            print(f"overhead per trial (a trial's end to the next one's code): median "
                  f"{statistics.median(gaps):.1f} s, p90 {p90:.1f} s over {len(gaps)}")  # fmt: skip
        print(f"best val_accuracy: {best:.3f} (default parameters: {baseline:.3f})")
        params = next(t["params"] for t in done if t["objective"] == best)
        print(f"best parameters: {params}")
    finally:
        wb.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
