"""`hubforge job ...` with the in-process local backend (no hub): real TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.notebooks import training_notebook


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    training_notebook(home / "train.ipynb")
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN", "HUBFORGE_PROFILE_GPUS")
    }
    return dict(clean, HOME=str(home), HUBFORGE_DATA=str(tmp_path / "data"))


def job(env, *args, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "job", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=env["HOME"],
    )


def test_submit_follow_show_logs(env):
    r = job(env, "submit", "train.ipynb", "--workers", "2", "--param", "epochs=2", "--follow")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.split()[1].rstrip(";")
    assert "epoch 2/2 [########################]" in r.stderr
    assert r.stderr.strip().endswith("(succeeded)")

    r = job(env, "list")
    assert r.stdout.startswith(job_id) and "succeeded" in r.stdout
    r = job(env, "show", job_id)
    assert "worker-1: succeeded" in r.stdout and "model_dir:" in r.stdout
    r = job(env, "logs", job_id, "--replica", "worker-1")
    assert "Epoch 2/2" in r.stdout
    r = job(env, "cancel", job_id)
    assert r.returncode == 2 and "already succeeded" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "train.ipynb", "--param", "epochs"], "use NAME=VALUE, e.g. epochs=3"),
        (["submit", "train.ipynb", "--workers", "two"], "invalid int value: 'two'"),
        (["submit", "train.ipynb", "--workers", "0"], "workers=0: choose between 1 and 8"),
        (["submit", "train.ipynb", "--param", "lr=0.1"], "Unknown parameter(s) lr"),
        (["submit", "nope.ipynb"], "does not exist"),
        (["show", "nope-123456"], "No job 'nope-123456'"),
        (["logs", "nope-123456"], "No job 'nope-123456'"),
        (["frob"], "invalid choice: 'frob'"),
    ],
)
def test_bad_input(env, args, message):
    r = job(env, *args, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr
    assert not os.path.exists(os.path.join(env["HUBFORGE_DATA"], "users"))
