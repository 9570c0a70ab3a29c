"""A job that a crash of the whole workbench interrupted resumes from its checkpoint (#30):
the review killed every process of a workbench (kill -9) while a job trained; the next `up`
reported it "failed: the job's supervisor was killed" although its BackupAndRestore
checkpoints were there. Now the service resumes it as it starts, counted as a restart with
the reason in its history, and no epoch finished before the crash is trained again."""

from __future__ import annotations

import contextlib
import time

import psutil
import pytest

from hubforge.processes import JOBS_MARKER, MARKER
from tests.workbench import start_workbench

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]
CONFIG = 'c.Workbench.label_studio_python = ""\n'
API = "services/hubforge/api/jobs"
TRAIN = """
import time
import numpy as np
import tensorflow as tf
from hubforge import distribute

class Slow(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(1.0)

x = np.random.default_rng(0).random((64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(x, y, epochs=8, batch_size=16, verbose=2,
          callbacks=distribute.callbacks(tensorboard=False) + [Slow()])
"""


def _progress(wb, token: str, job: str) -> list[dict]:
    r = wb.api("GET", f"{API}/{job}/progress", token)
    return r.json().get("history", []) if r.status_code == 200 else []


def _kill_everything(wb) -> None:
    """kill -9 of `up` and every process of the workbench, its jobs' included."""
    data = str(wb.data_dir)
    victims = [psutil.Process(wb.proc.pid)]
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if data in (env.get(MARKER), env.get(JOBS_MARKER)):
                victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wb.proc.wait(timeout=30)
    psutil.wait_procs(victims, timeout=30)


def test_a_job_the_crash_interrupted_resumes_from_its_checkpoint(tmp_path):
    data = tmp_path / "wb"
    wb = start_workbench(data, config=CONFIG)
    try:
        token = wb.create_user("rita")
        r = wb.api("POST", API, token, json={"script": TRAIN, "spec": {"name": "crash"}})
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        deadline = time.monotonic() + 300
        while len(_progress(wb, token, job)) < 2:
            assert time.monotonic() < deadline, wb.api("GET", f"{API}/{job}", token).text
            time.sleep(0.5)
        # the last epoch may have ended just before its checkpoint was written: not counted
        done = sorted(h["epoch"] for h in _progress(wb, token, job))
        before = set(done[:-1])
    finally:
        _kill_everything(wb)

    wb = start_workbench(data, config=CONFIG)
    try:
        deadline = time.monotonic() + 400
        while (record := wb.api("GET", f"{API}/{job}", token).json())["state"] not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            assert time.monotonic() < deadline, record
            time.sleep(1)
        assert record["state"] == "succeeded", record
        assert record["restarts"] == 1, record
        assert [h["event"] for h in record["history"]] == [
            "the workbench stopped while the job ran"
        ], record
        epochs = [h["epoch"] for h in _progress(wb, token, job)]
        assert epochs == list(range(8)), epochs
        log = wb.api("GET", f"{API}/{job}/logs/worker-0", token).json()["text"]
        assert "=== attempt 1" in log
        # the epochs finished before the crash were not trained again
        redone = {
            int(line.split()[1].split("/")[0]) - 1
            for line in log.split("=== attempt 1")[1].splitlines()
            if line.startswith("Epoch ")
        }
        assert redone and not redone & before, (before, redone)
    finally:
        wb.down()
