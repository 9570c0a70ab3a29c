"""The classify() report (#34): what the numbers say and how the page shows them."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from hubforge.automl import ClassifyError
from hubforge.automl.classifier_job import WRONG_SHOWN, evaluate
from hubforge.automl.classify import ClassifierReport, _items, _side
from hubforge.automl.report_page import confusion_svg, render

CLASSES = ["cat", "dog", "owl"]


def test_evaluate_counts_what_the_model_said_against_the_labels():
    truth = [0, 0, 1, 1, 2, 2]
    said = [
        [0.9, 0.1, 0],
        [0.2, 0.7, 0.1],
        [0, 1, 0],
        [0, 0.6, 0.4],
        [0.05, 0.05, 0.9],
        [0.8, 0.1, 0.1],
    ]
    keys = [f"k{i}" for i in range(6)]
    out = evaluate(CLASSES, truth, said, keys)
    assert out["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert out["accuracy"] == round(4 / 6, 4)
    assert out["per_class"] == {"cat": 0.5, "dog": 1.0, "owl": 0.5}
    assert [w["item"] for w in out["wrong"]] == ["k5", "k1"]  # the surest mistake first
    assert out["wrong"][0] == {"item": "k5", "label": "owl", "predicted": "cat", "confidence": 0.8}
    assert out["validation_items"] == 6 and out["wrong_count"] == 2


def test_a_class_with_no_validation_item_has_no_accuracy_and_the_list_is_capped():
    truth = [0] * 40
    said = [[0.1, 0.9, 0.0]] * 40
    out = evaluate(CLASSES, truth, said, [f"k{i}" for i in range(40)])
    assert out["per_class"] == {"cat": 0.0, "dog": None, "owl": None}
    assert len(out["wrong"]) == WRONG_SHOWN and out["wrong_count"] == 40


def report(tmp_path, kind="image", **extra) -> ClassifierReport:
    return ClassifierReport(
        classes=CLASSES, accuracy=0.75, per_class={"cat": 1.0, "dog": 0.5, "owl": None},
        confusion=[[2, 0, 0], [1, 1, 0], [0, 0, 0]],
        wrong=[{"item": "datasets/pets/7.png" if kind == "image" else "a <b>dog</b> barks",
                "label": "dog", "predicted": "cat", "confidence": 0.91}],
        size_bytes=250_000, latency_ms=3.25, params={"learning_rate": 0.00312, "units": 64},
        job="j-1", model_dir="/x/model", kind=kind,
        extra={"validation_items": 4, "wrong_count": 1, **extra},
    )  # fmt: skip


def test_the_page_shows_the_figures_the_matrix_and_the_mistakes(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBFORGE_DATA", str(tmp_path))
    (tmp_path / "datasets/pets").mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "datasets/pets/7.png")
    page = render(report(tmp_path), title="pets-1")
    assert page.startswith("<!doctype html>") and "<title>pets-1</title>" in page
    assert "75.0 %" in page and "accuracy on 4 validation items" in page
    assert "244.1 KiB" in page and "3.2 ms" in page and "learning_rate = 0.00312" in page
    assert re.search(r"<th>owl</th><td>n/a</td>", page)  # no validation item of that class
    assert 'aria-label="Confusion matrix"' in page
    assert "dog labeled, cat predicted: 1" in page  # each cell says what it counts
    assert 'src="data:image/png;base64,' in page  # the wrong item as a thumbnail
    assert "dog → <b>cat</b> (91 %)" in page


def test_text_mistakes_are_quoted_and_escaped_and_embed_is_a_fragment(tmp_path):
    page = render(report(tmp_path, kind="text"), embed=True)
    assert not page.startswith("<!doctype") and "<style>" in page
    assert "<q>a &lt;b&gt;dog&lt;/b&gt; barks</q>" in page and "<b>dog</b> barks" not in page
    assert "a small text model" in page


def test_the_matrix_shades_each_row_by_its_share():
    svg = confusion_svg(["a", "b"], [[3, 1], [0, 4]])
    fills = re.findall(r'fill="(rgba\([^"]+\)|#f6f7f9)"', svg)
    assert fills == ["rgba(47,111,222,0.770)", "rgba(47,111,222,0.310)", "#f6f7f9",
                     "rgba(47,111,222,1.000)"]  # fmt: skip


class Labeled:
    """What classify() reads of a project: its name, labels and labeled items."""

    name = "pets"
    labels = ["cat", "dog"]

    def __init__(self, items):
        self.items = items

    def labeled_items(self):
        return self.items


def test_the_split_is_per_item_and_too_few_labels_say_how_many_more():
    items = [(f"datasets/pets/{i}.png", "cat" if i % 2 else "dog") for i in range(30)]
    first = _items(Labeled(items), 0, 0.2)
    again = _items(Labeled(items[::-1]), 0, 0.2)
    side = {i["item"]: i["split"] for i in first}
    assert side == {i["item"]: i["split"] for i in again}  # the order does not matter
    assert side["datasets/pets/3.png"] == _side("datasets/pets/3.png", 0, 0.2)
    assert {"train", "validation"} == set(side.values())
    with pytest.raises(ClassifyError, match=r"label at least 2 items of every class first "
                       r"\(labeled now: cat: 3, dog: 1\)"):  # fmt: skip
        _items(Labeled([("a", "cat"), ("b", "cat"), ("c", "cat"), ("d", "dog")]), 0, 0.2)
    two = _items(Labeled([("a", "cat"), ("b", "cat"), ("c", "dog"), ("d", "dog")]), 0, 0.01)
    assert {i["split"] for i in two} == {"train", "validation"}  # one moved over


def test_prelabel_from_a_terminal_names_what_is_missing(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, HOME=str(tmp_path))
    for args, said in [
        (["nope"], f"No classify run 'nope' in {tmp_path}/automl"),
        (["../x"], "No classify run '../x': names are like"),
        ([], "usage: python -m hubforge.automl.prelabel NAME"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "hubforge.automl.prelabel", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)
