"""Real TensorFlow jobs on loopback with the local backend (in-process API, no hub)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from hubforge import jobs
from hubforge.jobs.local import LocalJobBackend
from tests.callers import wait_for


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
        home / "train.ipynb", workers=2, params={"epochs": 4, "steps": 8, "delay": 0.15}
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
    assert [h["epoch"] for h in job.progress["history"]] == [0, 1, 2, 3]
    assert "=== attempt 1" in job.logs("worker-1")


def _records(job, event):
    store = LocalJobBackend(os.environ["HUBFORGE_DATA"]).store(job.owner, job.id)
    return [r for r in store.progress_records() if r["event"] == event]


# What the job runs does not matter to these tests: no training. With two workers the runner
# still makes the strategy first (the script names hubforge's), so TensorFlow starts; the
# branch that never runs is for the pre-submit check, which refuses a multi-worker job that
# never enters a strategy.
SLEEPER = """\
import time
print("working", flush=True)
time.sleep({seconds})
if False:
    with hubforge.distribute.strategy().scope():
        pass
"""


def sleeper(home: Path, seconds: float) -> Path:
    script = home / f"sleep-{seconds}.py"
    script.write_text(SLEEPER.format(seconds=seconds))
    return script


def test_cancel_stops_every_process(home):
    job = jobs.submit(sleeper(home, 600), workers=2)
    wait_for(lambda: all("working" in job.logs(f"worker-{i}") for i in (0, 1)), what="both workers")
    pids = job_processes(job)
    assert all(psutil.pid_exists(p) for p in pids)
    job.cancel()
    assert job.status == "cancelled"
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=30, what="processes to exit")
    # the workers ended on SIGTERM, not 10 s later on SIGKILL: TensorFlow's preemption
    # notifier, which would keep them running, never took the signal
    assert not any("SIGTERM caught" in job.logs(f"worker-{i}") for i in (0, 1))
    with pytest.raises(jobs.JobError, match="already cancelled"):
        job.cancel()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_supervisor_is_reported(home):
    job = jobs.submit(sleeper(home, 600))
    wait_for(lambda: job.status == "running", what="running")
    supervisor = job.record["supervisor"]["pid"]
    os.killpg(supervisor, signal.SIGKILL)
    wait_for(lambda: job.status == "failed", timeout=30, what="failed state")
    assert "supervisor was killed" in job.reason


def test_one_user_cannot_see_anothers_job(home):
    job = jobs.submit(sleeper(home, 0))
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


def test_a_python_error_before_training_ends_the_job_at_once(home):
    """`import not_a_module` cannot be fixed by a restart: the job fails on the first try,
    within seconds, and its reason is the error's last line."""
    script = home / "broken.py"
    script.write_text("print('starting')\nimport not_a_module\n")
    job = jobs.submit(script)
    assert job.wait(timeout=120) == "failed"
    record = job.refresh().record
    assert record["restarts"] == 0, record
    assert "ModuleNotFoundError: No module named 'not_a_module'" in job.reason, job.reason
    assert "before the first training step" in job.reason
    assert "=== attempt 1" not in job.logs("worker-0")  # no restart: no waits between tries


SAME_ERROR = """
import numpy as np, tensorflow as tf
from hubforge import distribute
x = np.ones((64, 4), "float32"); y = np.ones((64, 1), "float32")
model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
model.compile("sgd", "mse")
model.fit(x, y, epochs=1, batch_size=16, verbose=0,
          callbacks=distribute.callbacks(tensorboard=False, backup=False))
raise ValueError("the data is bad after training")
"""


def test_the_same_error_twice_is_not_retried_again(home):
    """An error after training started gets one restart (it may have been the machine); the
    same error again ends the job."""
    script = home / "same.py"
    script.write_text(SAME_ERROR)
    job = jobs.submit(script, max_restarts=5)
    assert job.wait(timeout=240) == "failed"
    record = job.refresh().record
    assert record["restarts"] == 1, record
    assert "ValueError: the data is bad after training" in job.reason
    assert "the same error as the attempt before" in job.reason


STRATEGIES = """
import numpy as np, tensorflow as tf
mirrored = tf.distribute.MirroredStrategy()
x = np.ones((64, 4), "float32"); y = np.ones((64, 1), "float32")
with mirrored.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
    model.compile("sgd", "mse")
model.fit(x, y, epochs=1, verbose=0)
multi = tf.distribute.MultiWorkerMirroredStrategy()  # as TensorFlow's guides do, mid-notebook
with multi.scope():
    other = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,))])
    other.compile("sgd", "mse")
other.fit(x, y, epochs=1, verbose=0)
print("STRATEGIES", mirrored.num_replicas_in_sync, multi.num_replicas_in_sync)
"""


def test_a_one_worker_job_runs_what_runs_in_a_kernel(home):
    """A script that makes a MirroredStrategy and later a MultiWorkerMirroredStrategy runs in
    a kernel; as a 1-worker job it ran with a TF_CONFIG for a cluster of one and failed with
    'Collective ops must be configured at program startup'."""
    script = home / "strategies.py"
    script.write_text(STRATEGIES)
    kernel = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        | {"TF_USE_LEGACY_KERAS": "1"},
    )
    assert "STRATEGIES 1 1" in kernel.stdout, kernel.stderr[-2000:]
    job = jobs.submit(script)
    assert job.wait(timeout=300) == "succeeded", job.reason + job.logs("worker-0")[-2000:]
    assert "STRATEGIES 1 1" in job.logs("worker-0")


def test_a_plotting_notebook_runs_headless_and_its_figures_are_kept(home):
    """`%matplotlib inline`, pandas/seaborn/scikit-learn as a kernel has them, plt.show() and
    a figure left open: the job succeeds and both figures are PNG artifacts of the job."""
    import nbformat
    from PIL import Image

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt"),
        nbformat.v4.new_code_cell(
            "import numpy as np, pandas as pd, seaborn as sns\n"
            "from sklearn.linear_model import LinearRegression\n"
            "df = pd.DataFrame({'x': np.arange(20.0)}); df['y'] = 2 * df.x + 1\n"
            "fit = LinearRegression().fit(df[['x']], df.y)\n"
            "print('SLOPE', round(float(fit.coef_[0]), 3))\n"
            "sns.lineplot(data=df, x='x', y='y')\nplt.show()"
        ),
        nbformat.v4.new_code_cell("plt.figure(); plt.bar([1, 2], [3, 4]); plt.title('left open')"),
    ]
    nbformat.write(nb, home / "plots.ipynb")
    job = jobs.submit(home / "plots.ipynb")
    assert job.wait(timeout=180) == "succeeded", job.reason + job.logs("worker-0")[-2000:]
    assert "SLOPE 2.0" in job.logs("worker-0")
    figures = job.refresh().artifacts["figures"]
    assert [os.path.basename(f) for f in figures] == ["figure-1.png", "figure-2.png"]
    for path in figures:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100
    shown = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "job", "show", job.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"figure: {figures[0]}" in shown.stdout, shown.stdout + shown.stderr


def test_submit_says_what_the_notebook_check_saw(home, capsys):
    """The training notebook users start from passes the check; one that asks for input()
    is submitted with a warning naming the cell, in the API and in the CLI."""
    import nbformat

    assert jobs.check(home / "train.ipynb", workers=2) == []
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('hello')"), nbformat.v4.new_code_cell("input()")]
    nbformat.write(nb, home / "asks.ipynb")
    done = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "job", "submit", str(home / "asks.ipynb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning: cell 2: input() waits for a keyboard" in done.stderr
    job = jobs.list()[0]
    job.wait(timeout=120)  # input() on a closed stdin: EOFError before any training
    assert "EOFError" in job.reason and job.refresh().record["restarts"] == 0


OUTSIDE = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks"


@pytest.mark.parametrize(
    ("notebook", "figures", "workers"),
    [
        ("strategies_guide.ipynb", 1, (1,)),
        ("tabular_analysis.ipynb", 2, (1,)),
        # one kernel run, compared with a one-worker and a two-worker job (side by side)
        ("multi_worker_guide.ipynb", 0, (1, 2)),
    ],
)
def test_notebooks_from_elsewhere_give_the_same_result_as_a_kernel_and_as_a_job(
    home, monkeypatch, notebook, figures, workers
):
    """Notebooks written the way people write them elsewhere (TensorFlow's guides: two
    strategies in one notebook, inline plots, a shell line, a checkpoint; a pandas/scikit-
    learn/seaborn analysis) print the same RESULT run in a kernel and as a one-worker job,
    and the job keeps the figures they drew; the multi-worker tutorial's way also as a
    two-worker job."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")  # as in every Hubforge kernel
    monkeypatch.delenv("TF_CONFIG", raising=False)  # which has no cluster
    path = home / notebook
    shutil.copy(OUTSIDE / notebook, path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(home)}}
    ).execute()
    texts = [o.get("text", "") for cell in nb.cells for o in cell.get("outputs", [])]
    (in_kernel,) = [line for t in texts for line in t.splitlines() if line.startswith("RESULT")]
    assert all(jobs.check(path, n) == [] for n in workers)  # nothing to warn about
    for job, n in [(jobs.submit(path, workers=n), n) for n in workers]:
        assert job.wait(timeout=300) == "succeeded", job.reason + job.logs("worker-0")[-3000:]
        log = job.logs("worker-0")
        (as_job,) = [line for line in log.splitlines() if line.startswith("RESULT")]
        # TensorFlow's CPU start-up noise is in the replica's debug log, not in its log
        assert "cuInit" not in log and "cudart_stub" not in log
        assert "cpu_feature_guard" not in log
        if "tensorflow" in path.read_text():  # (the pandas/seaborn notebook never loads it)
            debug = Path(job.artifacts["job_dir"]) / "replicas" / "worker-0.debug.log"
            assert "cuda" in debug.read_text().lower()
        if n > 1:
            assert f"workers in sync: {n}" in log
        assert json.loads(as_job[len("RESULT ") :]) == json.loads(in_kernel[len("RESULT ") :])
        assert len(job.refresh().artifacts["figures"]) == figures
    if notebook == "strategies_guide.ipynb":
        assert "shell line ran" in log and json.loads(as_job[7:])["restored"] is True
