"""The training cell people write (#31): the tf.data pipeline first, then
`hubforge.distribute.strategy()`, in the same cell. It ran in the kernel and failed as a
2-worker job with "Collective ops must be configured at program startup"; the traceback
pointed at script.py. Now the job's runner makes the strategy before the notebook's first
line, and a failing job names the notebook cell and line."""

from __future__ import annotations

import nbformat

from hubforge import jobs

NATURAL = """\
import numpy as np
import tensorflow as tf
from hubforge import distribute

x = np.random.default_rng(0).random((64, 4)).astype("float32")
data = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1))).batch(16)
strategy = distribute.strategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
model.fit(data, epochs=2, verbose=2)
print("replicas in sync:", strategy.num_replicas_in_sync)
"""


def _notebook(path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_data_first_then_strategy_trains_as_a_two_worker_job(home):
    _notebook(home / "natural.ipynb", "import os", NATURAL)
    job = jobs.submit(home / "natural.ipynb", workers=2)
    assert not any("Collective" in w for w in job.warnings), job.warnings
    assert job.wait(timeout=300) == "succeeded", job.reason + job.logs("worker-0")
    for worker in ("worker-0", "worker-1"):
        assert "replicas in sync: 2" in job.logs(worker), job.logs(worker)


def test_a_failing_job_names_the_notebook_cell_and_line(home):
    _notebook(home / "broken.ipynb", "x = 1", "y = 2\nz = {}\nz['missing']")
    job = jobs.submit(home / "broken.ipynb")
    assert job.wait(timeout=180) == "failed"
    logs = job.logs("worker-0")
    assert "The job failed in notebook cell 2, line 3" in logs, logs
    assert "notebook cell 2, line 3: KeyError" in job.refresh().reason, job.reason
