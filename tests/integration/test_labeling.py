"""Labeling against the real Label Studio the workbench runs, with the real SDK."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from hubforge import labeling
from hubforge.labeling import api

pytestmark = pytest.mark.hub
CREDENTIALS = "services/hubforge/api/labeling/credentials"


def shapes(folder, n=50):
    """n small PNGs: even ones a white circle, odd ones a white square."""
    from PIL import ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.new("RGB", (32, 32), "black")
        draw = ImageDraw.Draw(img)
        (draw.ellipse if i % 2 == 0 else draw.rectangle)((6, 6, 26, 26), fill="white")
        img.save(folder / f"{i:03d}.png")
    (folder / "README.md").write_text("not an image")


@pytest.fixture
def as_user(workbench, monkeypatch):
    """Run the labeling API as a hub user, the way a kernel in their server does."""

    def switch(name: str) -> str:
        token = workbench.create_user(name)
        monkeypatch.setenv("HUBFORGE_SERVICE_URL", workbench.url + "services/hubforge/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        monkeypatch.setenv("HUBFORGE_DATA", str(workbench.data_dir / "hdfs"))
        monkeypatch.setenv("HUBFORGE_USER_AREA", str(workbench.data_dir / "hdfs/users" / name))
        monkeypatch.delenv("HUBFORGE_LABEL_STUDIO_TOKEN", raising=False)
        monkeypatch.setattr(api, "_credentials", None)
        return token

    return switch


def test_each_user_gets_their_own_label_studio_account(workbench, as_user):
    token = as_user("lena")
    r = workbench.api("GET", CREDENTIALS, token)
    assert r.status_code == 200, r.text
    creds = r.json()
    assert creds["email"] == "lena@hubforge.local" and len(creds["token"]) == 40
    assert creds["ui_url"] == "/hub@forge%20space/services/label-studio/"
    assert workbench.api("GET", CREDENTIALS, token).json()["token"] == creds["token"]
    other = workbench.api("GET", CREDENTIALS, as_user("lars")).json()
    assert other["token"] != creds["token"]
    assert workbench.api("GET", CREDENTIALS).status_code == 403
    # Label Studio itself is reachable through the hub's one port
    r = workbench.api("GET", "services/label-studio/health")
    assert r.status_code == 200 and r.json()["status"] == "UP"


def test_create_import_label_progress_export(workbench, as_user):
    as_user("lena")
    shapes(workbench.data_dir / "hdfs" / "datasets" / "shapes")
    project = labeling.create_project("shapes", "datasets/shapes", ["circle", "square"])
    assert project.task == "image-classification" and project.labels == ["circle", "square"]
    assert project.last_import.added == 50 and project.last_import.unsupported == ["README.md"]
    again = labeling.create_project("shapes", "datasets/shapes", ["circle", "square"])
    assert again.id == project.id
    assert (again.last_import.added, again.last_import.already_there) == (0, 50)
    assert project.progress == {
        "labeled": 0,
        "total": 50,
        "per_label": {"circle": 0, "square": 0},
    }

    seen = []
    for _ in range(3):
        task = project.next_item()
        assert task is not None and task["id"] not in seen
        seen.append(task["id"])
        number = int(task["data"]["hubforge_path"][-7:-4])
        project.annotate(task["id"], "circle" if number % 2 == 0 else "square")
    progress = project.progress
    assert progress["labeled"] == 3 and sum(progress["per_label"].values()) == 3
    with pytest.raises(labeling.LabelingError, match="Unknown label 'triangle'"):
        project.annotate(seen[0], "triangle")

    exported = json.loads(project.export("JSON").read_text())
    assert sorted(t["id"] for t in exported) == sorted(seen)
    labels = {
        t["data"]["hubforge_path"]: t["annotations"][0]["result"][0]["value"]["choices"][0]
        for t in exported
    }
    for path, label in labels.items():
        assert label == ("circle" if int(path[-7:-4]) % 2 == 0 else "square")
    path = project.export("CSV")
    assert path.parent == workbench.data_dir / "hdfs/users/lena/labeling"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["label"] for r in rows} <= {"circle", "square"}
    with pytest.raises(labeling.LabelingError, match="COCO is for object-detection"):
        project.export("COCO")
    assert [p.name for p in labeling.list_projects()] == ["shapes"]


def test_isolation_and_mistakes(workbench, as_user):
    as_user("lars")
    assert labeling.list_projects() == []
    with pytest.raises(labeling.LabelingError, match="No project 'shapes'"):
        labeling.open_project("shapes")
    (workbench.data_dir / "hdfs" / "datasets" / "empty").mkdir(parents=True, exist_ok=True)
    cases = [
        (("xyz", "datasets/empty", ["a"]), {}, "has nothing to label"),
        (("xyz", "datasets/nope", ["a"]), {}, "no such folder"),
        (("xyz", "/etc", ["a"]), {}, "outside the data area"),
        (("xyz", "datasets/shapes", ["a"]), {"task": "segmentation"}, "choose one of"),
        (("xyz", "datasets/shapes", []), {}, "a non-empty list"),
        (("x", "datasets/shapes", ["a"]), {}, "3 to 50 characters"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(labeling.LabelingError, match=message):
            labeling.create_project(*args, **kwargs)


def test_text_classification_from_strings(workbench, as_user):
    as_user("lars")
    texts = ["great product", "terrible support", "works fine", "great product"]
    project = labeling.create_project("reviews", texts, ["good", "bad"], task="text-classification")
    assert project.last_import.added == 3  # the same text twice is one item
    task = project.next_item()
    project.annotate(task["id"], "good")
    assert project.progress["labeled"] == 1
    assert (
        labeling.create_project(
            "reviews", texts + ["meh"], ["good", "bad"], task="text-classification"
        ).last_import.added
        == 1
    )
