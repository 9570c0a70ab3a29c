"""Tiny exported models in TF Serving's layout, made in a subprocess (TensorFlow is heavy)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from hubforge.processes import free_port

KERAS = """
import sys, numpy as np, tensorflow as tf
base, version, bias = sys.argv[1], sys.argv[2], float(sys.argv[3])
model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(4,), name="score")])
model.layers[0].set_weights([np.ones((4, 1), "float32"), np.array([bias], "float32")])
model.save(f"{base}/{version}")
"""

MULTI = """
import sys, tensorflow as tf
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.float32, name="scale")])
    def serve(self, text, scale):
        return {"length": tf.strings.length(text), "scaled": scale * 2.0}
m = M()
tf.saved_model.save(m, sys.argv[1] + "/1", signatures={"serving_default": m.serve})
"""


def _run(script: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-c", script, *args],
        check=True,
        timeout=180,
        capture_output=True,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"),
    )


def keras_model(base: Path, version: int, bias: float = 0.0) -> Path:
    """y = sum(x) + bias, as a Keras SavedModel at ``base/version``."""
    _run(KERAS, str(base), str(version), str(bias))
    return base / str(version)


def multi_io_model(base: Path) -> Path:
    """Two named inputs (a string and a float), two outputs."""
    _run(MULTI, str(base))
    return base / "1"


def model_server(
    command: list[str], port: int, log: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """Run a model server ``command`` that listens on ``port``; (process, base URL) once
    /healthz answers 200. The deadline is generous: a busy machine loads TensorFlow slowly.
    Its output goes to ``log`` (shown if it exits before it is ready) or nowhere."""
    out = log.open("wb") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
    finally:
        if log:
            out.close()  # the child keeps its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"{command[0]} exited with {proc.returncode}: {said}")
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"{command[0]} did not become ready within 180 s")


def start_serving(name: str, base: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``python -m hubforge.serving.server`` for one model on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "hubforge.serving.server", "--model-name", name]
    command += ["--model-base-path", str(base), "--rest_api_port", str(port), *extra]
    return model_server(command, port)


CLASSIFIER = """
import sys, numpy as np, tensorflow as tf
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.layers.Dense(128, activation="relu", input_shape=(32,)),
    tf.keras.layers.Dense(3, activation="softmax"),
])
model.save(sys.argv[1] + "/1")
x = np.random.default_rng(1).standard_normal((200, 32)).astype("float32")
np.save(sys.argv[1] + "/x.npy", x)
np.save(sys.argv[1] + "/y.npy", model.predict(x, verbose=0).argmax(axis=1))
"""


def classifier_model(base: Path) -> Path:
    """32 floats -> 3 class probabilities (4,483 weights), version 1 under ``base``; also
    writes sample inputs ``x.npy`` and the model's own class ids ``y.npy`` next to it."""
    _run(CLASSIFIER, str(base))
    return base / "1"
