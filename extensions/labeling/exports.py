"""What labeling gives back: a project's annotations exported to a file, and its labeled
items as a tf.data.Dataset (``Project.export``, ``Project.to_tf_dataset``)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .connection import data_root
from .errors import LabelingError

if TYPE_CHECKING:
    from .project import Project

EXPORTS = ("JSON", "JSON_MIN", "CSV", "COCO")


def export(project: Project, format: str, path: str | os.PathLike | None) -> Path:
    """``project``'s annotations in ``format`` written to ``path`` (see ``Project.export``)."""
    format = format.upper()
    if format not in EXPORTS:
        raise LabelingError(f"format={format!r}: choose one of {', '.join(EXPORTS)}")
    if format == "COCO" and project.task != "object-detection":
        raise LabelingError("COCO is for object-detection projects; use JSON or CSV")
    chunks = project._ls.projects.exports.download_sync(
        project.id, export_type=format, download_all_tasks=False
    )
    data = b"".join(chunks)
    if path is None:
        area = Path(os.environ.get("HUBFORGE_USER_AREA") or data_root())
        ext = {"JSON_MIN": "json", "COCO": "zip"}.get(format, format.lower())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = area / "labeling" / f"{project.name}-{stamp}.{ext}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _split(
    project: Project, split: str, validation_fraction: float, seed: int
) -> list[tuple[str, int]]:
    """(item, label index) of the labeled items on the ``split`` side: decided per item from
    a hash of its path and ``seed``, so an item always lands on the same side."""
    if split not in ("train", "validation", "all"):
        raise LabelingError(f"split={split!r}: 'train', 'validation' or 'all'")
    if not 0 <= validation_fraction < 1:
        raise LabelingError("validation_fraction: from 0 to below 1")
    chosen = []
    for key, label in project.labeled_items():
        digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
        in_validation = int.from_bytes(digest[:4], "big") / 2**32 < validation_fraction
        if split == "all" or in_validation == (split == "validation"):
            chosen.append((key, project.labels.index(label)))
    if not chosen:
        raise LabelingError(
            f"No labeled items in the {split!r} split yet: label some first "
            f"({project.progress['labeled']} labeled)"
        )
    return chosen


def to_tf_dataset(
    project: Project,
    image_size: tuple[int, int],
    split: str,
    validation_fraction: float,
    seed: int,
) -> Any:
    """``project``'s labeled items as a tf.data.Dataset (see ``Project.to_tf_dataset``)."""
    import numpy as np
    import tensorflow as tf

    if project.task == "object-detection":
        raise LabelingError("to_tf_dataset gives (item, class) pairs; for boxes use export('COCO')")
    chosen = _split(project, split, validation_fraction, seed)
    keys = [k for k, _ in chosen]
    labels = np.array([i for _, i in chosen], dtype=np.int64)
    if project.task == "text-classification":
        return tf.data.Dataset.from_tensor_slices((keys, labels))
    paths = [str(data_root() / k) for k in keys]

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, image_size)
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
