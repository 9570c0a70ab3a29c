"""Tiny exported models in TF Serving's layout, made in a subprocess (TensorFlow is heavy)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
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


# y = sum(x) + 1 as a plain tf.Module (the Keras model's signature: x, 4 floats a row) that
# answers as the KERAS one with bias 1, or, by the third argument: "fails" where a row's first
# value is negative (a NotFound error of TensorFlow: HTTP 500), "slow" (~100 ms of matmuls)
VARIANT = """
import sys, tensorflow as tf
base, version, mode = sys.argv[1], sys.argv[2], sys.argv[3]
class M(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        y = tf.reduce_sum(x, axis=1, keepdims=True) + 1.0
        if mode == "fails":
            missing = lambda: y + tf.strings.to_number(tf.io.read_file("/no-such-hubforge-file"))
            y = tf.cond(tf.reduce_min(x[:, 0]) < 0, missing, lambda: y)
        if mode == "slow":
            m = tf.ones([256, 256]) / 256.0
            step = lambda i, a: (i + 1, tf.matmul(a, m))
            _, a = tf.while_loop(lambda i, a: i < 400, step, (0, m))
            y = y + 0.0 * tf.reduce_sum(a)
        return {"score": y}
m = M()
tf.saved_model.save(m, f"{base}/{version}", signatures={"serving_default": m.serve})
"""


def _run(script: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-c", script, *args],
        check=True,
        timeout=180,
        capture_output=True,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"),
    )


def run_as_a_job(script: str, timeout: float = 300, **env: str) -> dict:
    """``script`` in a process of its own with a job's TensorFlow settings (tf_keras) and
    ``env``; what its last line of output printed as JSON (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", **env),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Exports are cached per machine: starting TensorFlow to export the same tiny model costs
# seconds each time, and ~30 tests want one. The key is the script, its arguments and the
# TensorFlow installed, so a changed script or TensorFlow makes new ones; the copy a test gets
# is its own (tests change, damage and chown what they get).
CACHE = Path(tempfile.gettempdir()) / "hubforge-tests" / "models"


def _tensorflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tensorflow")
    except PackageNotFoundError:
        return version("tensorflow-cpu")


def _key(script: str, args: list[str]) -> str:
    key = json.dumps([script, args, _tensorflow_version(), sys.executable])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@contextlib.contextmanager
def _cache_lock():
    """One process at a time makes missing entries (the others wait, then copy)."""
    CACHE.parent.mkdir(mode=0o711, exist_ok=True)
    CACHE.mkdir(exist_ok=True)
    with (CACHE / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _fresh_folder(key: str) -> Path:
    fresh = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=CACHE))
    fresh.chmod(0o755)
    return fresh


def cached_export(script: str, args: list[str], made: str, target: Path) -> None:
    """Copy the export ``script`` makes (``made`` in the folder its first argument names) to
    ``target``; exported once per machine and key."""
    entry = CACHE / _key(script, args)
    if not entry.is_dir():
        with _cache_lock():
            if not entry.is_dir():
                fresh = _fresh_folder(entry.name)
                try:
                    _run(script, str(fresh), *args)
                    (fresh / made).rename(entry)
                finally:
                    shutil.rmtree(fresh, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(entry, target, dirs_exist_ok=True)


# Each script run in turn in one process: one TensorFlow start for all of them.
BATCH = """
import json, sys
import tensorflow as tf
for script, argv in json.loads(sys.argv[1]):
    sys.argv = ["-c", *argv]
    tf.keras.backend.clear_session()
    exec(compile(script, "<export>", "exec"), {"__name__": "__main__"})
"""


def warm_cache() -> None:
    """Make every export the suite asks for that this machine has not cached yet, in one
    TensorFlow process (a fresh CI machine: one start instead of eight). Run in the
    background as the suite starts; a test that wants one meanwhile waits for it."""
    wanted = [(KERAS, ["v", str(float(b))], "v") for b in (0, 1, 2, 5, 10, 100)]
    wanted += [(IMAGE, [], "1"), (MULTI, [], "1")]
    wanted += [(VARIANT, ["v", mode], "v") for mode in ("good", "fails", "slow")]
    from tests.logs import SCRIPT as LOGS  # (TensorBoard's logs of a tiny run, too)

    wanted += [(LOGS, [], "logs")]
    with _cache_lock():
        missing = [(s, a, m, CACHE / _key(s, a)) for s, a, m in wanted]
        missing = [w for w in missing if not w[3].is_dir()]
        if not missing:
            return
        fresh = [_fresh_folder(entry.name) for *_, entry in missing]
        try:
            jobs = [[s, [str(f), *a]] for (s, a, _, _), f in zip(missing, fresh, strict=True)]
            _run(BATCH, json.dumps(jobs))
            for (_, _, made, entry), folder in zip(missing, fresh, strict=True):
                (folder / made).rename(entry)
        finally:
            for folder in fresh:
                shutil.rmtree(folder, ignore_errors=True)


def variant_model(base: Path, version: int, mode: str) -> Path:
    """VARIANT's model (mode "good", "fails" or "slow") at ``base/version``."""
    cached_export(VARIANT, ["v", mode], "v", base / str(version))
    return base / str(version)


def keras_model(base: Path, version: int, bias: float = 0.0) -> Path:
    """y = sum(x) + bias, as a Keras SavedModel at ``base/version``."""
    cached_export(KERAS, ["v", str(bias)], "v", base / str(version))
    return base / str(version)


IMAGE = """
import sys, numpy as np, tensorflow as tf
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.layers.Conv2D(2, 3, input_shape=(32, 32, 1), name="conv"),
    tf.keras.layers.GlobalAveragePooling2D(),
    tf.keras.layers.Dense(3, activation="softmax", name="classes"),
])
model.save(sys.argv[1] + "/1")
"""


def image_model(base: Path) -> Path:
    """32x32 grey images -> 3 class probabilities, version 1 under ``base``."""
    cached_export(IMAGE, [], "1", base / "1")
    return base / "1"


def multi_io_model(base: Path) -> Path:
    """Two named inputs (a string and a float), two outputs."""
    cached_export(MULTI, [], "1", base / "1")
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
    proc.wait(timeout=30)
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
