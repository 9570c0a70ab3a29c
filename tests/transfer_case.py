"""Transfer learning as a team does it, without a download (run by
tests/integration/test_transfer.py in a process of its own, with the Keras of Hubforge's
kernels and jobs): a small base model trained here on one task (the orientation of a noisy
bar, 4 classes, 2000 images), kept in the base-model store, then fine-tuned on 60 labeled
images of a new task (straight or diagonal), against the same network trained from scratch
on those 60. Prints one JSON line."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import tensorflow as tf

from hubforge import automl

SIZE = 32
NOISE = 60.0  # the pixel noise: a bar is hard to see, and 60 images teach little alone
ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
rng = np.random.default_rng(0)
tf.keras.utils.set_random_seed(0)


def image(angle: float) -> np.ndarray:
    """A bar at ``angle`` somewhere near the middle, in heavy noise."""
    img = np.zeros((SIZE, SIZE), "float32")
    cx, cy = rng.uniform(10, 22, 2)
    length = int(rng.integers(12, 20))
    t = np.linspace(-length / 2, length / 2, 4 * length)
    xs = np.clip(np.round(cx + t * np.cos(angle)).astype(int), 0, SIZE - 1)
    ys = np.clip(np.round(cy + t * np.sin(angle)).astype(int), 0, SIZE - 1)
    img[ys, xs] = 255.0
    return np.clip(img + rng.normal(0, NOISE, img.shape), 0, 255)[..., None]


def base_model(folder: str) -> tuple[str, tf.keras.Model]:
    kinds = rng.integers(0, 4, 2000)
    x = np.stack([image(ANGLES[k]) for k in kinds])
    inputs = tf.keras.Input((SIZE, SIZE, 1))
    h = tf.keras.layers.Rescaling(1 / 255)(inputs)
    h = tf.keras.layers.Conv2D(16, 3, activation="relu")(h)
    h = tf.keras.layers.MaxPooling2D()(h)
    h = tf.keras.layers.Conv2D(32, 3, activation="relu")(h)
    h = tf.keras.layers.MaxPooling2D()(h)
    features = tf.keras.layers.Conv2D(32, 3, activation="relu")(h)
    pooled = tf.keras.layers.GlobalAveragePooling2D()(features)
    full = tf.keras.Model(inputs, tf.keras.layers.Dense(4, activation="softmax")(pooled))
    full.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    full.fit(x, kinds, epochs=6, batch_size=64, verbose=0)
    extractor = tf.keras.Model(inputs, features)  # what the team keeps: the features
    path = os.path.join(folder, "orientations.keras")
    extractor.save(path)
    return path, extractor


def new_task(n: int) -> tuple[np.ndarray, np.ndarray]:
    kinds = rng.integers(0, 2, n)
    x = np.stack([image(ANGLES[2 * rng.integers(0, 2) + k]) for k in kinds])
    return x, np.array(["straight", "diagonal"])[kinds]


def untrained_twin(extractor: tf.keras.Model, folder: str) -> str:
    """The same network, freshly initialised (never trained), kept in the store too: the
    same head trained the same way on it is the comparison."""
    tf.keras.utils.set_random_seed(0)
    path = os.path.join(folder, "untrained.keras")
    tf.keras.models.clone_model(extractor).save(path)
    return path


def refusals(x, y) -> list[str]:
    said = []
    for call in (
        lambda: automl.fine_tune("half-plus-two", x, y),  # TF functions, no Keras layers
        lambda: automl.fine_tune("orientations", x, ["straight"] * len(y)),
        lambda: automl.fine_tune("nope", x, y),
    ):
        try:
            call()
            said.append("")
        except automl.BaseModelError as e:
            said.append(str(e))
    return said


def main() -> None:
    path, extractor = base_model(sys.argv[1])
    automl.add_base_model(
        "orientations", path, input_size=[SIZE, SIZE, 1], licence="MIT",
        source="trained by this test", preprocessing="none",
    )  # fmt: skip
    automl.add_base_model(
        "half-plus-two", sys.argv[2], input_size=[1], licence="Apache-2.0",
        source="TF Serving's tests", preprocessing="none",
    )  # fmt: skip
    x, y = new_task(60)
    validation = new_task(150)
    automl.add_base_model(
        "untrained", untrained_twin(extractor, sys.argv[1]), input_size=[SIZE, SIZE, 1],
        licence="MIT", source="the same network, never trained", preprocessing="none",
    )  # fmt: skip
    same = {"validation_data": validation, "epochs": (10, 5), "learning_rates": (1e-2, 1e-4)}
    tuned = automl.fine_tune("orientations", x, y, **same)
    tf.keras.utils.set_random_seed(0)
    scratch = automl.fine_tune("untrained", x, y, **same)
    predicted = tuned.predict(validation[0][:20])
    print(
        json.dumps(
            {
                "fine_tuned": tuned.history[-1]["val_accuracy"],
                "scratch": scratch.history[-1]["val_accuracy"],
                "classes": tuned.classes,
                "epochs": len(tuned.history),
                "predicted_right": int(np.sum(np.array(predicted) == validation[1][:20])),
                "refusals": refusals(x, y),
            }
        )
    )


if __name__ == "__main__":
    main()
