"""The version scan of an endpoint: what it serves follows the folder and the labels, scan
after scan (TF Serving's half_plus_two test models as versions)."""

from __future__ import annotations

import json
import shutil

import pytest

from hubforge.serving.errors import NotFound
from hubforge.serving.repository import ModelRepository, VersionPolicy
from tests.integration.test_tfserving_parity import MODELS


def versions(tmp_path, *numbers: int):
    base = tmp_path / "model"
    for n in numbers:
        shutil.copytree(MODELS / "saved_model_half_plus_two_cpu" / "00000123", base / str(n))
    return base


def test_every_scan_follows_the_folder_and_the_labels(tmp_path):
    base = versions(tmp_path, 1, 2)
    (base / "labels.json").write_text(json.dumps({"stable": 1}))
    repo = ModelRepository("m", base)
    assert repo.refresh() == [1, 2]
    assert repo.refresh() == [1, 2]  # a second scan, everything already loaded
    (base / "labels.json").write_text("{}")  # the label removed: version 1 goes
    assert repo.refresh() == [2]
    shutil.rmtree(base / "2")  # the newest deleted: the next one serves
    assert repo.refresh() == [1]
    assert repo.resolve().version == 1


def test_policies_of_a_model_config(tmp_path):
    base = versions(tmp_path, 1, 2, 3)
    latest2 = ModelRepository("m", base, VersionPolicy("latest", num_versions=2), labels={})
    assert latest2.refresh() == [2, 3] and latest2.refresh() == [2, 3]
    every = ModelRepository("m", base, VersionPolicy("all"), labels={"old": 1})
    assert every.refresh() == [1, 2, 3] and every.resolve(label="old").version == 1
    specific = ModelRepository("m", base, VersionPolicy("specific", versions=(1, 3)), labels={})
    assert specific.refresh() == [1, 3]
    shutil.rmtree(base / "3")
    assert specific.refresh() == [1] and latest2.refresh() == [1, 2]


def test_a_version_replaced_right_after_it_failed_is_not_reported_failed(tmp_path):
    """A deploy that failed removes its version; a fixed one deployed at once under the same
    number must not be answered with the broken one's error before the next scan tried it
    (a deploy then reported the old failure for a model that loads)."""
    base = versions(tmp_path, 1, 2)
    pb = base / "2" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])  # version 2 is broken
    repo = ModelRepository("m", base)
    assert repo.refresh() == [1]
    (state,) = repo.status(2)["model_version_status"]
    assert state["state"] == "END" and "failed to load" in state["status"]["error_message"]
    # the deploy removes it and copies a fixed version 2 in, before any scan
    shutil.rmtree(base / "2")
    shutil.copytree(MODELS / "saved_model_half_plus_two_cpu" / "00000123", base / "2")
    with pytest.raises(NotFound):  # not served yet, and not failed: still to be tried
        repo.status(2)
    assert [s["state"] for s in repo.status()["model_version_status"]] == ["AVAILABLE"]
    assert repo.refresh() == [2]  # the next scan loads it
    (state,) = repo.status(2)["model_version_status"]
    assert state["state"] == "AVAILABLE"
