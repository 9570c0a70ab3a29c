"""Bounding boxes in the labeling widget (detection projects), through its Python methods."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from hubforge import labeling
from tests.integration.test_labeling import as_user, shapes  # noqa: F401 (fixture)

pytestmark = pytest.mark.hub


def test_boxes_are_drawn_saved_and_exported(workbench, as_user):  # noqa: F811
    from hubforge.widgets import label

    as_user("dora")
    shapes(workbench.data_dir / "hdfs" / "datasets" / "boxes", 3)
    project = labeling.create_project(
        "boxes", "datasets/boxes", ["circle", "square"], task="object-detection"
    )
    widget = label(project)
    assert widget.detection and widget.current == "circle"
    with pytest.raises(labeling.LabelingError, match="draw boxes"):
        widget.label("circle")
    # mistakes are refused with the rule, and nothing is added
    with pytest.raises(labeling.LabelingError, match="inside the image"):
        widget.add_box("circle", 90, 10, 20, 10)
    with pytest.raises(labeling.LabelingError, match="Unknown label 'car'"):
        widget.add_box("car", 10, 10, 20, 10)
    assert widget.submit() is None and "at least one box" in widget.status

    # what the browser sends: a label key picks the label, a drag sends the box
    widget._on_msg(widget, {"action": "label", "index": 1}, None)
    assert widget.current == "square"
    box = {"x": 18.75, "y": 18.75, "width": 62.5, "height": 62.5}
    widget._on_msg(widget, {"action": "box", "box": box}, None)
    widget.add_box("circle", 0, 0, 10, 10)
    widget.remove_box()  # Backspace
    assert widget.boxes == [{"label": "square", **box}]
    first = widget.item["id"]
    widget._on_msg(widget, {"action": "submit"}, None)  # Enter
    assert widget.item["id"] != first and widget.boxes == []
    assert widget.progress["labeled"] == 1
    widget.wait()

    (saved,) = [t for t in project.tasks(labeled=True)]
    assert saved["id"] == first
    (result,) = saved["annotations"][0]["result"]
    assert result["type"] == "rectanglelabels"
    assert result["value"]["rectanglelabels"] == ["square"]
    assert result["value"]["x"] == pytest.approx(18.75) and result["value"]["width"] == (
        pytest.approx(62.5)
    )
    # COCO export: the box in pixels of the 32x32 image
    archive = zipfile.ZipFile(io.BytesIO(project.export("COCO").read_bytes()))
    coco = json.loads(archive.read("result.json"))
    (ann,) = coco["annotations"]
    assert [round(v) for v in ann["bbox"]] == [6, 6, 20, 20]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert names[ann["category_id"]] == "square"


def test_model_proposed_boxes_are_shown_least_sure_first_and_accepted(
    workbench,
    as_user,  # noqa: F811
):
    from hubforge.widgets import label

    as_user("dora")
    shapes(workbench.data_dir / "hdfs" / "datasets" / "boxes-pre", 3)
    project = labeling.create_project(
        "boxes-pre", "datasets/boxes-pre", ["circle", "square"], task="object-detection"
    )
    shape = {"x": 18.75, "y": 18.75, "width": 62.5, "height": 62.5}

    def detector(batch):
        """Squares fill their corners: sure of squares, less of circles."""
        answers = []
        for image in batch:
            square = image[7, 7].mean() > 0.5
            label_, score = ("square", 0.9) if square else ("circle", 0.6)
            answers.append([{"label": label_, "score": score, **shape}])
        return answers

    with pytest.raises(labeling.LabelingError, match="one list of boxes per image"):
        project.preannotate(lambda batch: [[]])
    with pytest.raises(labeling.LabelingError, match="inside the image"):
        project.preannotate(
            lambda batch: (
                [[{"label": "circle", "x": 90, "y": 0, "width": 20, "height": 5}]] * len(batch)
            )
        )
    assert project.preannotate(detector) == 3

    widget = label(project, order="uncertain")
    first = widget.item
    assert first["preboxes"] == [{"label": "circle", **shape}] and first["score"] == 0.6
    widget.accept()  # the model's boxes, as they are
    following = widget.item
    assert following["preboxes"] and following["id"] != first["id"]
    widget._on_msg(widget, {"action": "submit"}, None)  # Enter with nothing drawn: accept
    widget.wait()
    saved = {t["id"]: t for t in project.tasks(labeled=True)}
    assert set(saved) == {first["id"], following["id"]}
    (result,) = saved[first["id"]]["annotations"][0]["result"]
    assert result["value"]["rectanglelabels"] == ["circle"]
    assert result["value"]["width"] == pytest.approx(62.5)
