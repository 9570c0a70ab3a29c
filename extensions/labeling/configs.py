"""Label configs (Label Studio's XML for each task type) and the annotation results they
hold: building a result from a class name or boxes, and reading labels back out of one."""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import quoteattr

from .errors import LabelingError

TASKS = ("image-classification", "text-classification", "object-detection")


def label_config(task: str, labels: list[str]) -> str:
    """Label Studio's XML for a task type; ``from_name`` is always "label"."""
    if task not in TASKS:
        raise LabelingError(f"task={task!r}: choose one of {', '.join(TASKS)}")
    if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise LabelingError("labels: a non-empty list of names, e.g. ['cat', 'dog']")
    if len(set(labels)) != len(labels):
        raise LabelingError(f"labels: each name once ({labels})")
    if task == "object-detection":
        items = "".join(f"<Label value={quoteattr(x)}/>" for x in labels)
        return (
            '<View><Image name="image" value="$image"/>'
            f'<RectangleLabels name="label" toName="image">{items}</RectangleLabels></View>'
        )
    items = "".join(f"<Choice value={quoteattr(x)}/>" for x in labels)
    kind = "Image" if task == "image-classification" else "Text"
    field_name = "image" if kind == "Image" else "text"
    return (
        f'<View><{kind} name="{field_name}" value="${field_name}"/>'
        f'<Choices name="label" toName="{field_name}" choice="single">{items}</Choices></View>'
    )


def _task_of(config: str) -> str:
    if "RectangleLabels" in config:
        return "object-detection"
    return "image-classification" if "<Image" in config else "text-classification"


def _labels_of(config: str) -> list[str]:
    return re.findall(r'<(?:Choice|Label) value="([^"]*)"', config)


def _check(labels: list[str], label: Any) -> None:
    if label not in labels:
        raise LabelingError(f"Unknown label {label!r}: this project has {labels}")


def _result(
    task: str,
    labels: list[str],
    label: str | list[dict[str, Any]],
    size: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Label Studio's result list for a class name (or detection boxes, with the image's
    ``size`` in pixels when known) in a project of ``task`` with ``labels``."""
    to_name = "text" if task == "text-classification" else "image"
    if task == "object-detection":
        if not isinstance(label, list):
            raise LabelingError(
                "object-detection: pass boxes, e.g. [{'label': 'car', 'x': 10, 'y': 20, "
                "'width': 30, 'height': 15}] (percent of the image)"
            )
        result = []
        for box in label:
            _check(labels, box.get("label"))
            value = _box(box)
            item = {
                "from_name": "label",
                "to_name": to_name,
                "type": "rectanglelabels",
                "value": {**value, "rotation": 0, "rectanglelabels": [box["label"]]},
            }
            if size:
                item["original_width"], item["original_height"] = size
            result.append(item)
        return result
    _check(labels, label)
    return [
        {
            "from_name": "label",
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": [label]},
        }
    ]


def _box(box: dict[str, Any]) -> dict[str, float]:
    """A box's x, y, width, height checked: numbers, percent of the image, inside it."""
    try:
        value = {k: float(box[k]) for k in ("x", "y", "width", "height")}
    except (KeyError, TypeError, ValueError):
        raise LabelingError(
            f"box {box!r}: give x, y, width, height as numbers (percent of the image)"
        ) from None
    inside = (
        value["x"] >= 0
        and value["y"] >= 0
        and value["width"] > 0
        and value["height"] > 0
        and value["x"] + value["width"] <= 100.001
        and value["y"] + value["height"] <= 100.001
    )
    if not inside:
        raise LabelingError(
            f"box {value}: must lie inside the image (percent: x, y >= 0, width, height > 0, "
            "x + width <= 100, y + height <= 100)"
        )
    return value


def _plain(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def _labels_in(annotation: dict[str, Any]) -> list[str]:
    labels = []
    for r in annotation.get("result") or []:
        value = r.get("value", {})
        labels += value.get("choices") or value.get("rectanglelabels") or []
    return labels


def _done(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
