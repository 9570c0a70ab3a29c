"""An endpoint process imports TensorFlow without the Keras that TensorFlow's own import loads
eagerly (~0.8 s of each start's CPU): it only runs SavedModels' signatures. Keras stays
importable after, and SavedModels written by Keras are served (test_serving_server.py)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import sys
from hubforge.serving.server import import_tensorflow_without_keras
import_tensorflow_without_keras()
loaded = sorted(m for m in ("keras", "tf_keras", "sklearn") if m in sys.modules)
assert "tensorflow" in sys.modules
assert not loaded, f"TensorFlow's import loaded {loaded}"
import tf_keras
import keras
assert keras.optimizers.Adam and tf_keras.optimizers.Adam
print("ok")
"""


def test_tensorflow_comes_without_keras_and_keras_can_still_be_imported():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1")
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
