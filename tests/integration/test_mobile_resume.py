"""An optimization for phones killed (kill -9) in the middle of a fine-tuning, as a job's
restart finds it: the variants it had built are reused as they were, and the fine-tuning
goes on from its last epoch's checkpoint instead of from the start (#37: checkpoints)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.models import keras_model

pytestmark = pytest.mark.timeout(300)

RUN = """
import os, sys, numpy as np
from hubforge.serving.mobile import optimize
data = np.load(sys.argv[2])
report = optimize(
    sys.argv[1], variants=["float", "pruned", "dynamic"], data=(data["x"], data["y"]),
    run="here", output=os.path.join(os.environ["HUBFORGE_JOB_DIR"], "mobile"),
    epochs=int(sys.argv[3]), batch_size=2,
    progress=lambda step, total, what: print(f"[{step}/{total}] {what}", flush=True),
)
print("BUILT", [v.name for v in report.variants], flush=True)
"""


def start(tmp_path, job_dir, model, data, epochs):
    env = dict(os.environ, HUBFORGE_JOB_DIR=str(job_dir), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("JUPYTERHUB_API_TOKEN", None)
    log = (tmp_path / f"run-{time.monotonic_ns()}.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(model), str(data), str(epochs)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return proc, log


def read(log) -> str:
    log.seek(0)
    return log.read()


def test_a_killed_optimization_reuses_its_variants_and_resumes_its_fine_tuning(tmp_path):
    model = keras_model(tmp_path / "ranker", 1)
    rng = np.random.default_rng(0)
    x = rng.random((500, 4), dtype=np.float32) - 0.5  # the model answers sum(x)
    np.savez(tmp_path / "data.npz", x=x, y=(x.sum(1) > 0.5).astype("int64"))
    job_dir = tmp_path / "jobs" / "optimize-1"
    job_dir.mkdir(parents=True)
    folder = job_dir / "mobile"

    first, log = start(tmp_path, job_dir, model, tmp_path / "data.npz", 12)
    try:
        deadline = time.monotonic() + 180
        while "pruned: epoch 3/12" not in read(log):
            assert first.poll() is None, read(log)
            assert time.monotonic() < deadline, read(log)
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # as a node lost or a job's kill
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert "BUILT" not in read(log)
    log.close()
    record = folder / ".variants" / "float.json"  # written once float is built and measured
    kept, built_at = json.loads(record.read_text()), record.stat().st_mtime_ns
    assert kept["size_bytes"] == (folder / "float.tflite").stat().st_size

    second, log = start(tmp_path, job_dir, model, tmp_path / "data.npz", 12)
    assert second.wait(240) == 0, read(log)
    said = read(log)
    log.close()
    assert "BUILT ['float', 'pruned', 'dynamic']" in said, said
    assert record.stat().st_mtime_ns == built_at  # not built again
    assert "pruned: resuming the fine-tuning from its last checkpoint" in said, said
    epochs = [
        int(line.split()[2].split("/")[0])
        for line in said.splitlines()
        if line.startswith("pruned: epoch ")
    ]
    assert epochs and epochs[0] >= 3 and epochs[-1] == 12, epochs  # from where it stopped
    assert epochs == list(range(epochs[0], 13)), epochs
    report = json.loads((folder / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["float", "pruned", "dynamic"]
    # (float and dynamic answer as the SavedModel does; what pruning a 4-weight model to
    # half does to it is not this test's business)
    assert [v["parity"] for v in report["variants"][::2]] == [True, True], report["variants"]
    assert not any((folder / ".checkpoints" / "pruned").glob("*")), (
        "a finished fine-tuning leaves no checkpoint"
    )
