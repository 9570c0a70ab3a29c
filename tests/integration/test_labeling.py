"""Labeling against the real Label Studio the workbench runs, with the real SDK."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from hubforge import labeling
from hubforge.labeling import api, connection
from hubforge.processes import MARKER
from tests.models import run_as_a_job

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
        img.putpixel((i % 32, 31), (255, 0, 0))  # every file differs
        img.save(folder / f"{i:03d}.png")
    (folder / "README.md").write_text("not an image")


def shapes_project(workbench, name: str = "shapes"):
    """The calling user's project over datasets/shapes (made here, so every test runs alone
    and in any order)."""
    folder = workbench.data_dir / "hdfs" / "datasets" / "shapes"
    if not (folder / "049.png").exists():
        shapes(folder)
    return labeling.create_project(name, "datasets/shapes", ["circle", "square"])


def label_all(project) -> None:
    """Label every item right (even numbers are circles)."""
    while (task := project.next_item()) is not None:
        number = int(task["data"]["hubforge_path"][-7:-4])
        project.annotate(task["id"], "circle" if number % 2 == 0 else "square")


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
        monkeypatch.setattr(connection, "_credentials", None)
        monkeypatch.setattr(connection, "_teammate_credentials", {})
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
    bind = "b" * 64  # the hash of a nonce the browser would hold
    link = workbench.api("GET", f"services/hubforge/api/labeling/login-link?bind={bind}", token)
    assert (
        link.status_code == 200 and "/services/label-studio/hubforge/login?" in link.json()["url"]
    )
    nobody = workbench.api("GET", f"services/hubforge/api/labeling/login-link?bind={bind}")
    assert nobody.status_code == 403
    # Label Studio itself is reachable through the hub's one port
    r = workbench.api("GET", "services/label-studio/health")
    assert r.status_code == 200 and r.json()["status"] == "UP"


def test_create_import_label_progress_export(workbench, as_user):
    as_user("lena")
    project = shapes_project(workbench)
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
    as_user("iris")  # someone else's project exists ...
    shapes_project(workbench)
    as_user("lorna")  # ... and lorna sees none of it
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
    as_user("tara")
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


def test_items_are_queued_shuffled_with_a_seed(workbench, as_user):
    """A folder of one class after another is not labeled a class at a time: the queue
    (what the widget shows next) is shuffled, the same way for the same seed."""
    as_user("suri")
    shapes_project(workbench, "order-a")  # datasets/shapes: 000.png ... 049.png

    def queue(project) -> list[str]:
        tasks = sorted(project.tasks(), key=lambda t: t["id"])  # Label Studio's queue order
        return [Path(t["data"]["hubforge_path"]).name for t in tasks]

    shuffled = queue(labeling.open_project("order-a"))
    assert sorted(shuffled) == [f"{i:03d}.png" for i in range(50)]
    assert shuffled != sorted(shuffled)
    first = labeling.open_project("order-a").next_item()["data"]["hubforge_path"]
    assert Path(first).name == shuffled[0]  # what the widget shows first
    again = labeling.create_project("order-b", "datasets/shapes", ["circle", "square"])
    assert queue(again) == shuffled  # same items, same seed: same order
    other = labeling.create_project("order-c", "datasets/shapes", ["circle", "square"], seed=7)
    assert queue(other) != shuffled and sorted(queue(other)) == sorted(shuffled)
    kept = labeling.create_project(
        "order-d", "datasets/shapes", ["circle", "square"], shuffle=False
    )
    assert queue(kept) == sorted(shuffled)


def label_studio_process(workbench):
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        keeper = "hubforge.keeper" in cmd  # the process that restarts it, not Label Studio
        if any(c.endswith("ls_main.py") for c in cmd) and "serve" in cmd and not keeper:
            try:
                if proc.environ().get(MARKER) == str(workbench.data_dir):
                    return proc
            except psutil.Error:
                continue
    raise AssertionError("Label Studio is not running")


def annotation_count(project, task_id):
    return len(project._ls.annotations.list(id=task_id))


def test_annotations_made_while_label_studio_is_away_arrive_once(workbench, as_user):
    as_user("luke")
    project = shapes_project(workbench)
    tasks = [t["id"] for t in project.tasks(labeled=False)[:3]]
    ls = label_studio_process(workbench)
    ls.suspend()  # unreachable: requests time out
    try:
        answers = [project.annotate(t, "square", timeout=2) for t in tasks]
    finally:
        ls.resume()
    assert all(a["queued"] for a in answers)
    assert len(api.journal().pending()) == 3
    # a kernel restart: a new process reads the same journal
    restarted = api.Journal(api.journal().path)
    assert len(restarted.pending()) == 3
    # The first send timed out with its request already in Label Studio's socket: resumed, it
    # serves that request late, maybe while the replay sends it again; Label Studio saves a
    # create with Hubforge's result ids once (ls_main.create_annotation_once), so no wait here.
    workbench.wait_label_studio(time.monotonic() + 120)
    assert project.flush() == 0
    assert [annotation_count(project, t) for t in tasks] == [1, 1, 1]
    assert project.flush() == 0  # replaying again sends nothing twice
    assert [annotation_count(project, t) for t in tasks] == [1, 1, 1]

    # delivered, but the answer was lost: the replay finds it and does not send it again
    task = project.tasks(labeled=False)[0]["id"]
    entry = api.journal().add(project.id, task, project.result("circle"))
    project._ls.annotations.create(id=task, result=entry["result"])
    api.journal().mark_attempted(entry["uid"])  # the send timed out after arriving
    assert project.flush() == 0
    assert annotation_count(project, task) == 1


TRAIN = """
import json, os, numpy as np, tensorflow as tf
from hubforge import labeling
project = labeling.open_project("shapes")
train = project.to_tf_dataset(image_size=(16, 16))
validation = project.to_tf_dataset(image_size=(16, 16), split="validation")
again = project.to_tf_dataset(image_size=(16, 16), split="validation")
model = tf.keras.Sequential([
    tf.keras.layers.Flatten(input_shape=(16, 16, 3)), tf.keras.layers.Dense(2)])
model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(train.batch(8), validation_data=validation.batch(8), epochs=1, verbose=0)
image, label = next(iter(train))
print(json.dumps({
    "train": sum(1 for _ in train), "validation": sum(1 for _ in validation),
    "same_split": [int(y) for _, y in validation] == [int(y) for _, y in again],
    "shape": image.shape.as_list(), "max": float(tf.reduce_max(image)),
    "loss": history.history["loss"][0],
}))
"""


def test_labeled_items_feed_a_keras_fit(workbench, as_user):
    token = as_user("kim")
    project = shapes_project(workbench)
    label_all(project)
    assert project.progress["labeled"] == 50
    creds = workbench.api("GET", CREDENTIALS, token).json()
    result = run_as_a_job(
        TRAIN,
        HUBFORGE_LABEL_STUDIO_URL=creds["api_url"],
        HUBFORGE_LABEL_STUDIO_TOKEN=creds["token"],
    )
    assert result["train"] + result["validation"] == 50 and result["validation"] > 0
    assert result["same_split"] and result["shape"] == [16, 16, 3]
    assert 0 < result["max"] <= 1 and math.isfinite(result["loss"])


def test_label_widget_actions(workbench, as_user):
    from hubforge.widgets import label

    as_user("lex")
    project = shapes_project(workbench, "shapes-w")
    widget = label(project)
    first = widget.item
    assert first["kind"] == "image" and first["src"].startswith("data:image/png;base64,")
    assert widget.progress == {"labeled": 0, "total": 50}
    widget.label("circle")
    assert widget.progress["labeled"] == 1 and widget.item["id"] != first["id"]
    widget.wait()  # sent, and the next item locked for us, in the background
    assert widget.confirmed
    assert annotation_count(project, first["id"]) == 1
    widget.back()  # undo: the first item again, its label taken back
    assert widget.item["id"] == first["id"] and widget.progress["labeled"] == 0
    assert annotation_count(project, first["id"]) == 0
    widget.skip()
    assert widget.item["id"] != first["id"]
    # what a key press in the browser sends ("2" -> the second label)
    shown = widget.item["id"]
    widget._on_msg(widget, {"action": "label", "index": 1}, None)
    widget.wait()
    assert project.tasks(labeled=True)[0]["id"] == shown
    assert project.progress["per_label"] == {"circle": 0, "square": 1}
    assert len(widget.latencies) == 2

    # pre-labels from a model in the kernel: least confident first, Enter accepts
    def brightness(batch):
        centre = batch[:, 4:6, 4:6, :].mean(axis=(1, 2, 3))  # squares fill their corner
        p_square = 0.5 + 0.45 * (centre - 0.5)
        return np.stack([1 - p_square, p_square], axis=1)

    assert project.preannotate(brightness, image_size=(32, 32)) == 49
    ordered = label(project, order="uncertain")
    assert ordered.item["prelabel"] in ("circle", "square") and 0 < ordered.item["score"] < 1
    scores = sorted(max(p["score"] for p in t["predictions"]) for t in project.tasks(labeled=False))
    assert ordered.item["score"] == pytest.approx(scores[0])
    expected, accepted = ordered.item["prelabel"], ordered.item["id"]
    ordered.accept()
    assert ordered.item["id"] != accepted  # the next least sure item, not the same again
    ordered.wait()
    assert project.progress["per_label"][expected] >= 1
    with pytest.raises(labeling.LabelingError, match="expected"):
        project.preannotate(lambda batch: np.zeros((len(batch), 3)), image_size=(32, 32))


def test_cli(workbench, as_user):
    as_user("cleo")  # the CLI in a user's server uses the same environment
    label_all(shapes_project(workbench))
    run = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "label", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "shapes" in run.stdout and "50/50 labeled" in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "label", "progress", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "No project 'nope'" in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "label", "export", "shapes", "--format", "CSV"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith(".csv")


def test_account_keys_are_the_exact_hub_name(workbench):
    """Hub names that an old, lossy encoding mapped together get accounts of their own."""
    accounts = {}
    for name in ("ally", "ally-", "al.ly", "al-ly"):
        token = workbench.create_user(name)
        r = workbench.api("GET", CREDENTIALS, token)
        assert r.status_code == 200, r.text
        accounts[name] = r.json()
    assert len({a["token"] for a in accounts.values()}) == 4
    assert len({a["email"] for a in accounts.values()}) == 4
    assert accounts["ally"]["email"] == "ally@hubforge.local"
