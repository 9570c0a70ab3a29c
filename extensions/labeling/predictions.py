"""Pre-labels: a model's guesses for a project's unlabeled items, stored as Label Studio
predictions with scores (``Project.preannotate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .connection import data_root
from .errors import LabelingError
from .files import _image_size

if TYPE_CHECKING:
    from .project import Project


def preannotate(
    project: Project,
    model: Any,
    image_size: tuple[int, int] | None,
    model_version: str,
    batch_size: int,
) -> int:
    """``model``'s guesses for ``project``'s unlabeled items (see ``Project.preannotate``)."""
    import numpy as np

    if project.task == "object-detection":
        return _preannotate_boxes(project, model, image_size, model_version, batch_size)
    tasks = project.tasks(labeled=False)
    done = 0
    for start in range(0, len(tasks), batch_size):
        batch = tasks[start : start + batch_size]
        inputs = [_model_input(project, t, image_size) for t in batch]
        probabilities = np.asarray(_call_model(model, inputs), dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape != (len(batch), len(project.labels)):
            raise LabelingError(
                f"The model answered shape {list(probabilities.shape)}; expected "
                f"[{len(batch)}, {len(project.labels)}] (one probability per label)"
            )
        for task, row in zip(batch, probabilities, strict=True):
            best = int(row.argmax())
            project._ls.predictions.create(
                task=task["id"],
                result=project.result(project.labels[best]),
                score=float(row[best]),
                model_version=model_version,
            )
            done += 1
    return done


def _preannotate_boxes(
    project: Project,
    model: Any,
    image_size: tuple[int, int] | None,
    model_version: str,
    batch_size: int,
) -> int:
    """Detection pre-labels: the boxes a function proposes, scored by their least sure box
    (the widget shows the least sure items first)."""
    tasks = project.tasks(labeled=False)
    done = 0
    for start in range(0, len(tasks), batch_size):
        batch = tasks[start : start + batch_size]
        answers = _call_model(model, [_model_input(project, t, image_size) for t in batch])
        if not isinstance(answers, list | tuple) or len(answers) != len(batch):
            raise LabelingError(
                f"The model answered {type(answers).__name__}; expected a list with one "
                f"list of boxes per image ({len(batch)} here)"
            )
        for task, boxes in zip(batch, answers, strict=True):
            if not boxes:
                continue  # nothing found: nothing to accept
            scores = [float(b.get("score", 1.0)) for b in boxes]
            result = project.result(list(boxes), _image_size(task["data"]))
            for item, score in zip(result, scores, strict=True):
                item["score"] = score
            project._ls.predictions.create(
                task=task["id"], result=result, score=min(scores), model_version=model_version
            )
            done += 1
    return done


def _model_input(project: Project, task: dict[str, Any], image_size: tuple[int, int] | None) -> Any:
    data = task["data"]
    if project.task == "text-classification":
        return data["text"]
    import numpy as np
    from PIL import Image

    with Image.open(data_root() / data["hubforge_path"]) as img:
        img = img.convert("RGB")
        if image_size:
            img = img.resize((image_size[1], image_size[0]))
        return np.asarray(img, dtype=np.float32) / 255.0


def _call_model(model: Any, inputs: list[Any]) -> Any:
    import numpy as np

    if hasattr(model, "predict") and hasattr(model, "versions"):  # a deployed endpoint
        rows = [x.tolist() if hasattr(x, "tolist") else x for x in inputs]
        return model.predict(rows)
    batch = np.stack(inputs) if not isinstance(inputs[0], str) else np.array(inputs)
    if hasattr(model, "predict"):  # Keras
        return model.predict(batch, verbose=0)
    return model(batch)
