"""A classifier from a labeling project with no code (#34): `hubforge.automl.classify` on a
real Label Studio project through the hub's service; every trial is the user's own job, the
report's figures are what the deployed endpoint then answers, and the rest of the project
gets pre-labels from it. Another user cannot use the project, the search or its trials."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hubforge import automl, labeling
from hubforge.automl.classify import _side
from hubforge.jobs import get_tuning, list_tunings
from hubforge.jobs.errors import JobNotFound
from hubforge.widgets import label
from tests.callers import wait_for
from tests.integration.test_labeling import as_user, shapes_project  # noqa: F401 (fixture)

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]
RIGHT = {0: "circle", 1: "square"}  # even numbers are circles


def truth(key: str) -> str:
    return RIGHT[int(key[-7:-4]) % 2]


def label_some(project, n: int) -> list[str]:
    keys = []
    for _ in range(n):
        task = project.next_item()
        key = task["data"]["hubforge_path"]
        project.annotate(task["id"], truth(key))
        keys.append(key)
    return keys


def pixels(workbench, key: str) -> list:
    image = Image.open(workbench.data_dir / "hdfs" / key).convert("RGB").resize((32, 32))
    return (np.asarray(image, "float32") / 255).tolist()


def test_a_project_becomes_a_classifier_a_report_an_endpoint_and_pre_labels(
    workbench,
    as_user,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    monkeypatch.setenv("HOME", str(tmp_path))
    as_user("cls-cora")
    project = shapes_project(workbench, "cls-shapes")
    labeled = label_some(project, 40)  # 10 left for the pre-labels

    run = automl.classify(
        project, base_model=False, space={"learning_rate": [0.003, 0.0001]},
        max_trials=2, parallel=2, epochs=6,
    )  # fmt: skip
    assert run.notebook.is_file()  # the notebook it generated: the user's to read or change
    run.wait(timeout=420)
    trials = {t.params["learning_rate"]: t for t in run.trials}
    assert sorted(trials) == [0.0001, 0.003] and run.state == "succeeded"
    assert {t.state for t in trials.values()} == {"succeeded"}
    assert run.best.id == trials[0.003].id and run.best.objective >= 0.9, run.trials
    assert trials[0.0001].objective < run.best.objective  # too slow a rate for 6 epochs

    report = run.report()
    validation = [k for k in labeled if _side(k, 0, 0.2) == "validation"]
    assert report.accuracy == run.best.objective and report.classes == ["circle", "square"]
    assert sum(map(sum, report.confusion)) == len(validation) > 0
    assert report.size_bytes > 10_000 and report.latency_ms > 0
    page = report.html_path.read_text()
    assert 'aria-label="Confusion matrix"' in page and f"{100 * report.accuracy:.1f} %" in page
    assert automl.open_classification(run.name).best.id == run.best.id  # another kernel

    as_user("cls-eve")  # another user: not the project, not the search, not its trials
    with pytest.raises(labeling.LabelingError, match="No project 'cls-shapes'"):
        automl.classify("cls-shapes")
    assert list_tunings() == []
    with pytest.raises(JobNotFound, match="No tuning run"):
        get_tuning(run.tuning.id)
    as_user("cls-cora")

    endpoint = run.deploy()
    try:  # what the report says is what the endpoint answers
        said = endpoint.predict([pixels(workbench, k) for k in validation])
        right = [
            RIGHT[int(np.argmax(p))] == truth(k) for p, k in zip(said, validation, strict=True)
        ]
        assert sum(right) / len(right) == pytest.approx(report.accuracy, abs=1e-3)
        assert run.prelabel(endpoint) == 10
        guesses = project.tasks(labeled=False)
        good = [
            t["predictions"][0]["result"][0]["value"]["choices"][0]
            == truth(t["data"]["hubforge_path"])
            for t in guesses
        ]
        assert len(good) == 10 and sum(good) >= 8, guesses
    finally:
        endpoint.undeploy()


def test_what_classify_refuses_says_what_to_do_and_leaves_nothing(
    workbench,
    as_user,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    monkeypatch.setenv("HOME", str(tmp_path))
    as_user("cls-finn")
    project = shapes_project(workbench, "cls-few")
    label_some(project, 3)  # two circles and a square, or the other way round
    with pytest.raises(automl.ClassifyError, match="label at least 2 items of every class"):
        automl.classify(project)
    widget = label(project, train_trials=1)
    assert widget.trainable is False  # 3 labeled: "Train a model" is not offered yet
    label_some(project, 10)
    for bad, said in [
        (dict(space={"nope": [1, 2]}), "nope"),
        (dict(base_model="no-such-model"), "no-such-model"),
        (dict(epochs=0), "epochs: a whole number"),
        (dict(validation_fraction=1.5), "validation_fraction"),
        (dict(name="Bad Name"), "lower-case letters"),
    ]:
        with pytest.raises(ValueError, match=said):
            automl.classify(project, **bad)
    assert not (tmp_path / "automl").exists() or not any((tmp_path / "automl").iterdir())
    assert list_tunings() == []

    # the widget's "Train a model", pressed: a search of the labeled items starts, the
    # widget follows it (here: cancelled at once) and says how it ended
    widget = label(project, train_trials=1)
    assert widget.trainable is True
    widget._on_msg(widget, {"action": "train"}, None)
    started = widget.training
    assert started["state"] == "running" and "1 trials" in started["text"], started
    (run,) = list_tunings()
    assert run.record["name"] == started["name"] and run.record["max_trials"] == 1
    run.cancel()
    wait_for(lambda: widget.training["state"] != "running", 60, "the widget to see the end")
    assert widget.training["state"] == "cancelled", widget.training
    assert "The search cancelled" in widget.training["text"], widget.training
