"""Real TensorFlow jobs on loopback with the local backend (in-process API, no hub)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from hubforge import jobs
from hubforge.jobs.local import LocalJobBackend


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def job_processes(job) -> list[int]:
    record = job.refresh().record
    return [record["supervisor"]["pid"]] + [r["pid"] for r in record["replicas"].values()]


def test_two_workers_train_and_export_a_model(home):
    job = jobs.submit(home / "train.ipynb", workers=2, params={"epochs": 3})
    assert job.wait(timeout=240) == "succeeded", job.reason + job.logs("worker-0")
    progress = job.progress
    assert [h["epoch"] for h in progress["history"]] == [0, 1, 2]
    assert progress["epochs"] == 3 and "loss" in progress["history"][-1]
    assert {r["state"] for r in job.replicas.values()} == {"succeeded"}
    log = job.logs("worker-0")
    assert "shell-command-ran" in log  # `!` commands run
    assert "only when exploring" not in log  # skip-job cells do not
    assert [j.id for j in jobs.list()] == [job.id]

    # The chief's SavedModel loads and predicts in a fresh process.
    code = (
        "import sys, numpy as np, tensorflow as tf;"
        "m = tf.keras.models.load_model(sys.argv[1]);"
        "p = m.predict(np.full((3, 4), 0.9, 'float32'), verbose=0);"
        "print(p.shape, float(p.min()) >= 0, float(p.max()) <= 1)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, job.artifacts["model_dir"]],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert out.stdout.strip().endswith("(3, 1) True True"), out.stderr[-2000:]
    assert any(job.artifacts["log_dir"] and os.listdir(job.artifacts["log_dir"]))


def test_killed_worker_restarts_the_group_and_resumes(home):
    job = jobs.submit(
        home / "train.ipynb", workers=2, params={"epochs": 6, "steps": 10, "delay": 0.15}
    )

    wait_for(lambda: len(_records(job, "epoch_end")) >= 2, what="two epochs")
    victim = job.replicas["worker-1"]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert job.wait(timeout=300) == "succeeded", job.reason
    record = job.refresh().record
    assert record["restarts"] == 1
    done_before = {r["epoch"] for r in _records(job, "epoch_end") if r["attempt"] == 0}
    redone = {r["epoch"] for r in _records(job, "epoch_begin") if r["attempt"] == 1}
    assert done_before and redone
    assert not done_before & redone, f"epochs {done_before & redone} were trained twice"
    assert [h["epoch"] for h in job.progress["history"]] == [0, 1, 2, 3, 4, 5]
    assert "=== attempt 1" in job.logs("worker-1")


def _records(job, event):
    store = LocalJobBackend(os.environ["HUBFORGE_DATA"]).store(job.owner, job.id)
    return [r for r in store.progress_records() if r["event"] == event]


def test_cancel_stops_every_process(home):
    job = jobs.submit(home / "train.ipynb", workers=2, params={"epochs": 100, "delay": 0.2})
    wait_for(lambda: _records(job, "epoch_begin"), what="training to start")
    pids = job_processes(job)
    assert all(psutil.pid_exists(p) for p in pids)
    job.cancel()
    assert job.status == "cancelled"
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=30, what="processes to exit")
    with pytest.raises(jobs.JobError, match="already cancelled"):
        job.cancel()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_supervisor_is_reported(home):
    job = jobs.submit(home / "train.ipynb", params={"epochs": 100, "delay": 0.2})
    wait_for(lambda: job.status == "running", what="running")
    supervisor = job.record["supervisor"]["pid"]
    os.killpg(supervisor, signal.SIGKILL)
    wait_for(lambda: job.status == "failed", timeout=30, what="failed state")
    assert "supervisor was killed" in job.reason


def test_one_user_cannot_see_anothers_job(home):
    job = jobs.submit(home / "train.ipynb", params={"epochs": 1})
    backend = LocalJobBackend(os.environ["HUBFORGE_DATA"])
    with pytest.raises(jobs.JobNotFound):
        backend.get("mallory", job.id)
    assert backend.list("mallory") == []
    job.wait(timeout=120)
    assert (
        json.loads(
            (home.parent / "data" / "users" / job.owner / "jobs" / job.id / "job.json").read_text()
        )["state"]
        == "succeeded"
    )


SYNC = """
import hashlib, json, os, numpy as np, tensorflow as tf
from hubforge import distribute
strategy = distribute.strategy()
rng = np.random.RandomState(json.loads(os.environ["TF_CONFIG"])["task"]["index"])
x = rng.rand(256, 4).astype("float32")  # each worker its own data: only sync makes them equal
y = (x.sum(axis=1) > 2).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
    model.compile("sgd", "mse")
model.fit(ds, epochs=2, steps_per_epoch=5, verbose=0)
weights = b"".join(w.astype("float32").tobytes() for w in model.get_weights())
print("SYNC" + json.dumps({"replicas": strategy.num_replicas_in_sync,
                           "weights": hashlib.sha256(weights).hexdigest()}))
"""


def test_two_workers_train_one_synchronised_model(home):
    """A 2-worker job is one model: both workers see 2 replicas in sync and end with the
    same weights, though each read different data."""
    script = home / "sync.py"
    script.write_text(SYNC)
    job = jobs.submit(script, workers=2)
    assert job.wait(timeout=300) == "succeeded", job.reason + job.logs("worker-0")[-3000:]
    results = [
        json.loads(job.logs(f"worker-{i}").split("SYNC", 1)[1].splitlines()[0]) for i in (0, 1)
    ]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["weights"] == results[1]["weights"]
