"""Real TensorBoard logs from a tiny Keras run, written once per machine (tests.models'
cache: starting TensorFlow costs seconds each time) and copied where a test wants them."""

from __future__ import annotations

from pathlib import Path

from tests.models import cached_export

SCRIPT = """
import os, sys, numpy as np, tensorflow as tf
x = np.random.RandomState(0).rand(64, 4).astype("float32"); y = (x.sum(1) > 2).astype("float32")
m = tf.keras.Sequential([tf.keras.layers.Dense(1, activation="sigmoid", input_shape=(4,))])
m.compile("adam", "binary_crossentropy", metrics=["accuracy"])
m.fit(x, y, epochs=3, verbose=0,
      callbacks=[tf.keras.callbacks.TensorBoard(os.path.join(sys.argv[1], "logs"))])
"""


def write_logs(path: Path) -> Path:
    """A run's logs (its train/ event files: loss and accuracy of 3 epochs) in ``path``."""
    cached_export(SCRIPT, [], "logs", path)
    return path
