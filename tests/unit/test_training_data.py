"""``distribute.save_training_data``: what a job keeps for "Optimize for mobile", written
by the chief only and atomically; what optimize and the views find of it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hubforge import distribute
from hubforge.serving import mobile_job, mobile_views


@pytest.fixture
def job_dir(tmp_path, monkeypatch):
    folder = tmp_path / "jobs" / "train-1"
    monkeypatch.setenv("HUBFORGE_JOB_DIR", str(folder))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    return folder


class FakeJob:
    """What optimize reads of a job: its id, state and folders."""

    def __init__(self, folder, source="train.ipynb", status="succeeded"):
        self.id, self.status, self.reason = folder.name, status, ""
        self.artifacts = {"job_dir": str(folder), "model_dir": str(folder / "model")}
        self.record = {"spec": {"source": str(source), "name": folder.name}, "created": 1.0}


def test_the_chief_keeps_the_data_beside_the_model(job_dir):
    x, y = np.arange(24, dtype="float64").reshape(6, 4), np.array([0, 1, 0, 1, 1, 0])
    path = distribute.save_training_data(x, y)
    assert path == str(job_dir / "training-data.npz")
    with np.load(path) as kept:
        assert kept["x"].dtype == np.float32 and np.array_equal(kept["x"], x)
        assert np.array_equal(kept["y"], y)
    assert [p.name for p in job_dir.iterdir()] == ["training-data.npz"]  # no temp file left
    assert mobile_job.training_data_of(FakeJob(job_dir)) == path
    assert mobile_job.training_data_of(FakeJob(job_dir.parent / "other")) is None
    assert mobile_job.training_data_of("a/model/folder") is None


def test_other_workers_keep_nothing_and_bad_arrays_say_what_to_give(job_dir, monkeypatch):
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    )
    assert distribute.save_training_data(np.zeros((2, 3)), np.zeros(2)) is None
    assert not job_dir.exists()
    monkeypatch.delenv("TF_CONFIG")
    for x, y in ((np.zeros(3), np.zeros(3)), (np.zeros((3, 2)), np.zeros(2)), ([], [])):
        with pytest.raises(ValueError, match="as many inputs as labels"):
            distribute.save_training_data(x, y)
    assert not job_dir.exists()


def test_an_optimization_is_told_by_its_script_and_shows_its_progress(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    scripts = tmp_path / ".hubforge" / "optimize"
    scripts.mkdir(parents=True)
    script = scripts / "optimize-1.py"
    script.write_text("")
    (script.with_suffix(".json")).write_text(
        json.dumps({"origin": {"job": "train-1"}, "variants": ["float", "int8"]})
    )
    job = FakeJob(tmp_path / "jobs" / "optimize-train-1", source=script, status="running")
    (tmp_path / "jobs" / "optimize-train-1" / "mobile").mkdir(parents=True)
    (tmp_path / "jobs" / "optimize-train-1" / "mobile" / "progress.json").write_text(
        json.dumps({"step": 1, "total": 2, "what": "int8"})
    )
    assert mobile_views.is_optimization(job)
    assert not mobile_views.is_optimization(FakeJob(tmp_path / "jobs" / "train-1"))
    seen = mobile_views.view(job)
    assert seen["origin"] == {"job": "train-1"} and seen["variants"] == ["float", "int8"]
    assert seen["progress"] == {"step": 1, "total": 2, "what": "int8"}
    assert seen["report"] is None
    # a damaged or huge request file is not read, and says nothing
    (script.with_suffix(".json")).write_bytes(b"{" * (mobile_views.MAX_FILE + 10))
    assert mobile_views.view(job)["origin"] is None
    os.truncate(script.with_suffix(".json"), 3)
    assert mobile_views.view(job)["origin"] is None
