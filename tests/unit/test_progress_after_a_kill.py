"""An epoch that ended just before its job was killed (a preemption, kill -9) stays in the
job's history: the progress record is written before the checkpoint that lets the job go on
after that epoch. (The other order lost the epoch for good when the kill came between the two:
the restarted job went on after it, and its history skipped it.) Run as a job runs: its own
process, tf_keras."""

from __future__ import annotations

from tests.models import run_as_a_job

TWO_RUNS = """
import json, sys
import numpy as np
import tensorflow as tf
from hubforge import distribute
from hubforge.jobs.store import summarize_progress

class Killed(Exception):
    pass

backup = tf.keras.callbacks.BackupAndRestore
save = backup.on_epoch_end

def save_then_die(self, epoch, logs=None):
    save(self, epoch, logs)
    if epoch == 2:
        raise Killed  # epoch 2's checkpoint is on disk; nothing after it ran

x = np.random.default_rng(0).random((32, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)

def fit():
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=5, batch_size=16, verbose=0,
              callbacks=distribute.callbacks(tensorboard=False))

backup.on_epoch_end = save_then_die
try:
    fit()
except Killed:
    pass
backup.on_epoch_end = save
fit()  # the restarted job goes on after the last checkpointed epoch
lines = (distribute.job_dir() / distribute.PROGRESS_FILE).read_text().splitlines()
records = [json.loads(line) for line in lines]
print(json.dumps({
    "history": [h["epoch"] for h in summarize_progress(records)["history"]],
    "begun": [r["epoch"] for r in records if r["event"] == "epoch_begin"],
}))
"""


def test_an_epoch_checkpointed_just_before_a_kill_stays_in_the_history(tmp_path):
    seen = run_as_a_job(TWO_RUNS, timeout=240, HUBFORGE_JOB_DIR=str(tmp_path))
    assert seen["history"] == [0, 1, 2, 3, 4], seen
    assert seen["begun"] == [0, 1, 2, 3, 4], seen  # the restart did not train epoch 2 again
