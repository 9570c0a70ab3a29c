"""What a classify() trial runs, for the two kinds the hub test does not train (run by
tests/integration/test_classify_local.py in a process of its own, with the Keras of
Hubforge's kernels and jobs): a text model on generated sentences, and a head on a base
model from the store (colour images, the card's scale_0_1 preprocessing). Each exports a
model as a job does. Prints one JSON line."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from hubforge import automl
from hubforge.automl import classifier_job
from hubforge.automl.classify import _saved_model, _side

root = Path(sys.argv[1])
rng = random.Random(0)
GOOD = ["great", "lovely", "excellent", "fine", "happy", "wonderful"]
BAD = ["awful", "terrible", "broken", "sad", "horrible", "poor"]
FILL = ["the", "movie", "was", "really", "food", "day"]


def sentences(n: int) -> list[dict[str, str]]:
    items = []
    for i in range(n):
        pos = i % 2 == 0
        words = rng.sample(GOOD if pos else BAD, 2) + rng.sample(FILL, 3)
        rng.shuffle(words)
        items.append({"item": " ".join(words) + f" #{i}", "label": "pos" if pos else "neg"})
    return items


def shapes(folder: Path, n: int) -> list[dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        img = Image.new("RGB", (32, 32), "black")
        draw = ImageDraw.Draw(img)
        (draw.ellipse if i % 2 == 0 else draw.rectangle)((6, 6, 26, 26), fill="white")
        img.save(folder / f"{i:03d}.png")
        key = f"datasets/case-shapes/{i:03d}.png"
        items.append({"item": key, "label": "circle" if i % 2 == 0 else "square"})
    return items


def split(items: list[dict[str, str]]) -> list[dict[str, str]]:
    return [dict(i, split=_side(i["item"], 0, 0.25)) for i in items]


def trial(name: str, data: dict, **params) -> dict:
    os.environ["HUBFORGE_JOB_DIR"] = str(root / "jobs" / name)
    report = classifier_job.train(data, **params)
    written = json.loads((root / "jobs" / name / classifier_job.REPORT).read_text())
    assert written["accuracy"] == report["accuracy"]
    return report


text = {"kind": "text", "classes": ["neg", "pos"], "items": split(sentences(60)), "seed": 0}
text_report = trial("text", text, learning_rate=0.01, units=16, dropout=0.1, epochs=10)
answer = _saved_model(str(root / "jobs" / "text" / "model"))(["a lovely happy day", "awful sad"])


# a base model as a team keeps one: the features of a small network trained on shapes of
# other sizes and places than those below, without its classifier layer
def elsewhere(i: int) -> np.ndarray:
    img = Image.new("RGB", (32, 32), "black")
    draw = ImageDraw.Draw(img)
    box = (2 + i % 5, 2 + i % 7, 20 + i % 11, 20 + i % 9)
    (draw.ellipse if i % 2 == 0 else draw.rectangle)(box, fill="white")
    return np.asarray(img, "float32") / 255


tf.keras.utils.set_random_seed(0)
inputs = tf.keras.Input((32, 32, 3))  # values in [0, 1]: the card's scale_0_1 makes them
h = tf.keras.layers.Conv2D(16, 3, activation="relu", name="features_1")(inputs)
h = tf.keras.layers.Conv2D(16, 3, activation="relu", name="features_2")(h)
pretrain = tf.keras.Sequential(
    [tf.keras.Model(inputs, h), tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(2)]
)
pretrain.compile(
    tf.keras.optimizers.Adam(0.01), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
)
pretrain.fit(np.stack([elsewhere(i) for i in range(200)]), np.arange(200) % 2, epochs=8, verbose=0)
pretrain.layers[0].save(root / "base.keras")
store = Path(os.environ["HUBFORGE_DATA"]) / "datasets" / "base-models"
card = {"input_size": [32, 32, 3], "preprocessing": "scale_0_1", "licence": "MIT"}
automl.add_base_model("tiny-rgb", root / "base.keras", source="this test", **card, root=store)
images = split(shapes(Path(os.environ["HUBFORGE_DATA"]) / "datasets" / "case-shapes", 40))
based = {"kind": "image", "classes": ["circle", "square"], "items": images, "seed": 0,
         "base_model": "tiny-rgb", "image_size": [32, 32]}  # fmt: skip
based_report = trial("based", based, learning_rate=0.01, units=8, dropout=0.0, epochs=8, unfreeze=1)
model = tf.keras.models.load_model(root / "jobs" / "based" / "model", compile=False)
white = np.ones((1, 32, 32, 3), "float32")  # inputs in [0, 1], as Project.to_tf_dataset gives

print(
    json.dumps(
        {
            "text": {k: text_report[k] for k in ("accuracy", "confusion", "kind", "params")},
            "text_answer": np.asarray(answer).round(4).tolist(),
            "based": {k: based_report[k] for k in ("accuracy", "base_model", "params")},
            "based_layers": [layer.__class__.__name__ for layer in model.layers],
            "based_answer": model.predict(white, verbose=0).round(4).tolist(),
        }
    )
)
