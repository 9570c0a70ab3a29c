"""Write real TensorBoard logs with a tiny Keras run (in a subprocess: TensorFlow is heavy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, numpy as np, tensorflow as tf
x = np.random.RandomState(0).rand(64, 4).astype("float32"); y = (x.sum(1) > 2).astype("float32")
m = tf.keras.Sequential([tf.keras.layers.Dense(1, activation="sigmoid", input_shape=(4,))])
m.compile("adam", "binary_crossentropy", metrics=["accuracy"])
m.fit(x, y, epochs=3, verbose=0, callbacks=[tf.keras.callbacks.TensorBoard(sys.argv[1])])
"""


def write_logs(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        check=True,
        timeout=180,
        capture_output=True,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return path
