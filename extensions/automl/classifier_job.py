"""What each trial of :func:`hubforge.automl.classify` runs (#34): the frozen list of labeled
items in; a trained classifier, its validation report and the objective out.

Runs in a Hubforge job (the generated notebook calls :func:`train`): TensorFlow's Keras, the
job's strategy (one or more workers), TensorBoard logs and progress like any job. The report
(accuracy per class, confusion matrix, the items it gets wrong, size and latency) goes to
``<job>/classifier/report.json`` beside the exported model.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import distribute
from ..jobs.api import data_root

REPORT = Path("classifier") / "report.json"
WRONG_SHOWN = 24  # the validation items it gets wrong, most confident first


def _images(keys: list[str], size: tuple[int, int]) -> Any:
    import numpy as np
    import tensorflow as tf

    out = np.zeros((len(keys), *size, 3), "float32")
    for i, key in enumerate(keys):
        raw = tf.io.read_file(str(data_root() / key))
        image = tf.io.decode_image(raw, channels=3, expand_animations=False)
        out[i] = tf.image.resize(tf.cast(image, tf.float32) / 255.0, size).numpy()
    return out  # in [0, 1], as Project.to_tf_dataset and preannotate give images


def _inputs(data: dict[str, Any], keys: list[str], size: tuple[int, int]) -> Any:
    import numpy as np

    if data["kind"] == "text":
        return np.array(keys, dtype=object)  # one string per item, as endpoints get them
    return _images(keys, size)


def _small_cnn(classes: int, size: tuple[int, int], units: int, dropout: float) -> Any:
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Conv2D(16, 3, activation="relu", padding="same", input_shape=(*size, 3)),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu", padding="same"),
            layers.GlobalMaxPooling2D(),  # where a feature shows matters less than that it does
            layers.Dense(units, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(classes, activation="softmax"),
        ]
    )


def _text_model(classes: int, texts: Any, units: int, dropout: float) -> Any:
    import tensorflow as tf

    layers = tf.keras.layers
    vectorize = layers.TextVectorization(max_tokens=5000, output_sequence_length=64)
    vectorize.adapt(texts)
    inputs = tf.keras.Input(shape=(), dtype=tf.string)
    h = vectorize(inputs)
    h = layers.Embedding(5001, units)(h)
    h = layers.GlobalAveragePooling1D()(h)
    h = layers.Dropout(dropout)(h)
    return tf.keras.Model(inputs, layers.Dense(classes, activation="softmax")(h))


def _build(data: dict[str, Any], x: Any, size: tuple[int, int], units: int, dropout: float):
    """(model, its base model or None)."""
    from .transfer import _build as with_head
    from .transfer import _load

    classes = len(data["classes"])
    if data.get("base_model"):
        import tensorflow as tf

        from .base_models import get_base_model

        entry = get_base_model(data["base_model"])
        base = _load(entry)
        pixels = tf.keras.layers.Rescaling(255.0, input_shape=entry.input_size)  # as its card says
        return tf.keras.Sequential([pixels, with_head(entry, base, classes, dropout)]), base
    if data["kind"] == "text":
        return _text_model(classes, x, units, dropout), None
    return _small_cnn(classes, size, units, dropout), None


def _fit(model: Any, x: Any, y: Any, validation: Any, lr: float, epochs: range) -> None:
    import tensorflow as tf

    model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(
        x, y, validation_data=validation, initial_epoch=epochs.start, epochs=epochs.stop,
        batch_size=8, verbose=2, callbacks=distribute.callbacks(backup=False),
    )  # fmt: skip


def _latency_ms(model: Any, one: Any) -> float:
    """Median time of one prediction (one item), after a warm-up call."""
    model(one, training=False)
    times = []
    for _ in range(20):
        start = time.perf_counter()
        model(one, training=False)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def evaluate(classes: list[str], truth: list[int], probabilities: Any, keys: list[str]) -> dict:
    """Accuracy, accuracy per class, the confusion matrix (rows: the label, columns: the
    prediction) and the items it gets wrong, most confident first."""
    n = len(classes)
    confusion = [[0] * n for _ in range(n)]
    wrong = []
    for key, label, row in zip(keys, truth, probabilities, strict=True):
        predicted = int(max(range(n), key=lambda i: row[i]))
        confusion[label][predicted] += 1
        if predicted != label:
            item = {"item": key, "label": classes[label], "predicted": classes[predicted]}
            wrong.append({**item, "confidence": round(float(row[predicted]), 4)})
    wrong.sort(key=lambda w: -w["confidence"])
    per_class = {
        c: (round(confusion[i][i] / sum(confusion[i]), 4) if sum(confusion[i]) else None)
        for i, c in enumerate(classes)
    }
    right = sum(confusion[i][i] for i in range(n))
    return {
        "accuracy": round(right / max(1, len(truth)), 4),
        "per_class": per_class,
        "confusion": confusion,
        "wrong": wrong[:WRONG_SHOWN],
        "wrong_count": len(wrong),
        "validation_items": len(truth),
    }


def train(
    data: dict[str, Any],
    learning_rate: float = 1e-3,
    units: int = 64,
    dropout: float = 0.2,
    epochs: int = 10,
    unfreeze: int = 0,
) -> dict[str, Any]:
    """Train on ``data`` (what classify() froze: kind, classes, image size, items with
    their label and side of the split), export the model, report ``val_accuracy``."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(int(data.get("seed", 0)))  # a trial run again: same model
    size = tuple(data.get("image_size") or (32, 32))[:2]
    train_items = [i for i in data["items"] if i["split"] == "train"]
    val_items = [i for i in data["items"] if i["split"] == "validation"]
    index = {c: i for i, c in enumerate(data["classes"])}
    x = _inputs(data, [i["item"] for i in train_items], size)
    y = np.array([index[i["label"]] for i in train_items])
    xv = _inputs(data, [i["item"] for i in val_items], size)
    yv = np.array([index[i["label"]] for i in val_items])
    with distribute.strategy().scope():
        model, base = _build(data, x, size, units, dropout)
    head = max(1, epochs // 2) if base is not None and unfreeze else epochs
    _fit(model, x, y, (xv, yv), learning_rate, range(0, head))
    if base is not None and unfreeze and epochs > head:  # then the base's top layers too
        base.trainable = True
        for layer in base.layers[: max(0, len(base.layers) - unfreeze)]:
            layer.trainable = False
        _fit(model, x, y, (xv, yv), learning_rate / 10, range(head, epochs))

    report = evaluate(
        data["classes"], yv.tolist(), model.predict(xv, verbose=0), [i["item"] for i in val_items]
    )
    target = Path(distribute.export_dir())
    model.save(str(target))
    if distribute.is_chief():
        report.update(
            classes=data["classes"],
            kind=data["kind"],
            base_model=data.get("base_model") or "",
            image_size=list(size),
            params=dict(
                learning_rate=learning_rate,
                units=units,
                dropout=dropout,
                epochs=epochs,
                **({"unfreeze": unfreeze} if base is not None else {}),
            ),
            size_bytes=_size(target),
            latency_ms=_latency_ms(model, xv[:1]),
            train_items=len(train_items),
        )
        _write(distribute.job_dir() / REPORT, report)
    distribute.report(val_accuracy=report["accuracy"])
    return report


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
