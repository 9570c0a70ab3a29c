"""The version scan of an endpoint: what it serves follows the folder and the labels, scan
after scan (TF Serving's half_plus_two test models as versions)."""

from __future__ import annotations

import json
import shutil

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
