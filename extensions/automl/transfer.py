"""Transfer learning from the team's base models (#34): ``fine_tune()`` puts a classifier
head on a base model, trains it with the base frozen, then unfreezes the base's top layers
and trains on at a lower rate (the usual two stages of Keras's transfer-learning guide).

Runs where it is called (a notebook's kernel, or a job): TensorFlow's Keras (tf_keras in
Hubforge's kernels and jobs). The base model comes from the store, never from a download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base_models import BaseModel, BaseModelError, get_base_model


@dataclass
class FineTuned:
    """The trained ``model`` (it takes raw inputs: the preprocessing is its first layer),
    its ``classes`` in output order, and the ``history`` of both stages (one dict per
    epoch)."""

    model: Any
    classes: list[Any]
    history: list[dict[str, float]] = field(default_factory=list)

    def predict(self, x: Any) -> list[Any]:
        """The class of each input."""
        return [self.classes[i] for i in self.model.predict(x, verbose=0).argmax(axis=1)]


def _load(entry: BaseModel) -> Any:
    import tensorflow as tf

    try:
        base = tf.keras.models.load_model(str(entry.path), compile=False)
    except Exception as e:  # a SavedModel of plain TensorFlow functions, not Keras layers
        raise BaseModelError(
            f"{entry.name}: Keras cannot load it ({type(e).__name__}); fine_tune needs a Keras "
            "model (a .keras file, or a SavedModel written by model.save)"
        ) from None
    base.trainable = False
    return base


def _preprocessing(kind: str) -> Any:
    import tensorflow as tf

    if kind == "scale_0_1":
        return tf.keras.layers.Rescaling(1 / 255)
    if kind == "scale_-1_1":
        return tf.keras.layers.Rescaling(1 / 127.5, offset=-1)
    return tf.keras.layers.Identity()


def _build(entry: BaseModel, base: Any, classes: int, dropout: float) -> Any:
    import tensorflow as tf

    inputs = tf.keras.Input(shape=entry.input_size)
    h = base(_preprocessing(entry.preprocessing)(inputs), training=False)
    if len(h.shape) == 4:
        h = tf.keras.layers.GlobalAveragePooling2D()(h)
    elif len(h.shape) > 2:
        h = tf.keras.layers.Flatten()(h)
    h = tf.keras.layers.Dropout(dropout)(h)
    outputs = tf.keras.layers.Dense(classes, activation="softmax")(h)
    return tf.keras.Model(inputs, outputs)


def _labels(y: Any, classes: list[Any] | None) -> tuple[Any, list[Any]]:
    import numpy as np

    values = list(np.asarray(y).tolist())
    classes = list(classes) if classes is not None else sorted(set(values), key=str)
    unknown = sorted({str(v) for v in values} - {str(c) for c in classes})
    if unknown:
        raise BaseModelError(f"labels not in classes: {', '.join(unknown[:5])}")
    index = {str(c): i for i, c in enumerate(classes)}
    return np.array([index[str(v)] for v in values]), classes


def fine_tune(
    base_model: str | BaseModel,
    x: Any,
    y: Any,
    validation_data: tuple[Any, Any] | None = None,
    classes: list[Any] | None = None,
    epochs: tuple[int, int] = (5, 5),
    learning_rates: tuple[float, float] = (1e-3, 1e-4),
    unfreeze: int = 2,
    dropout: float = 0.2,
    batch_size: int = 16,
    callbacks: list | None = None,
) -> FineTuned:
    """A classifier of ``x`` (shaped as the base model's input) into the labels ``y``:
    a new head trained ``epochs[0]`` epochs on the frozen base, then the base's top
    ``unfreeze`` layers trained with it ``epochs[1]`` more at ``learning_rates[1]``."""
    import tensorflow as tf

    entry = base_model if isinstance(base_model, BaseModel) else get_base_model(base_model)
    if len(epochs) != 2 or min(epochs) < 0 or len(learning_rates) != 2:
        raise BaseModelError("epochs and learning_rates: two each (head first, then the top)")
    labels, classes = _labels(y, classes)
    if len(classes) < 2:
        raise BaseModelError("y: at least two classes to tell apart")
    validation = None
    if validation_data is not None:
        validation = (validation_data[0], _labels(validation_data[1], classes)[0])
    base = _load(entry)
    model = _build(entry, base, len(classes), dropout)
    history: list[dict[str, float]] = []
    for stage, (lr, first, last) in enumerate(
        [(learning_rates[0], 0, epochs[0]), (learning_rates[1], epochs[0], sum(epochs))]
    ):
        if stage == 1:
            base.trainable = True
            for layer in base.layers[: max(0, len(base.layers) - unfreeze)]:
                layer.trainable = False
        model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", ["accuracy"])
        if last > first:
            fit = model.fit(
                x, labels, validation_data=validation, epochs=last, initial_epoch=first,
                batch_size=batch_size, verbose=0, callbacks=callbacks or [],
            )  # fmt: skip
            keys = list(fit.history)
            history += [{k: float(fit.history[k][i]) for k in keys} for i in range(last - first)]
    return FineTuned(model, classes, history)
