"""A job imports TensorFlow without running what Keras imports and the job never uses
(scikit-learn through Keras's wrappers, matplotlib.pyplot); used, those work as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Run as a job's script: it never names the plotting library, so the runner draws nothing.
SCRIPT = """
import json, sys
import tensorflow as tf
from hubforge import deferred_imports

PYPLOT = ".".join(["mat" + "plotlib", "pyplot"])  # (named, the runner would set plotting up)
state = {name: deferred_imports.loaded(name) for name in ("sklearn", PYPLOT)}
import keras.wrappers  # what a notebook that uses the scikit-learn wrappers reads
import sklearn.base

wrapper = keras.wrappers.SKLearnClassifier
state["wrapper_is_an_estimator"] = issubclass(wrapper, sklearn.base.BaseEstimator)
state["sklearn_after_use"] = deferred_imports.loaded("sklearn")
dense = tf.keras.layers.Dense(1, kernel_initializer="ones")
state["keras_works"] = float(dense(tf.ones((1, 2)))[0, 0])
print(json.dumps(state))
"""

PLOT = """
import sys
from hubforge import deferred_imports
deferred_imports.defer()
import tensorflow  # (Keras imports pyplot: deferred)
before = deferred_imports.loaded("matplotlib.pyplot")
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [3, 1, 2])
plt.savefig(sys.argv[1])
print(before, deferred_imports.loaded("matplotlib.pyplot"), plt.get_backend())
"""


def _python(args: list[str], tmp_path) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    env.pop("HUBFORGE_JOB_DIR", None)
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_a_job_imports_tensorflow_without_scikit_learn_and_pyplot_and_uses_them_when_asked(
    tmp_path,
):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    state = json.loads(_python(["-m", "hubforge.jobs.runner", str(script)], tmp_path))
    assert state == {
        "sklearn": False,
        "matplotlib.pyplot": False,  # (Keras imports it: the runner would save no figure)
        "wrapper_is_an_estimator": True,
        "sklearn_after_use": True,
        "keras_works": 2.0,
    }


def test_a_deferred_pyplot_draws_and_saves_at_first_use(tmp_path):
    script = tmp_path / "plot.py"
    script.write_text(PLOT)
    png = tmp_path / "figure.png"
    line = _python([str(script), str(png)], tmp_path)
    assert line.lower() == "false true agg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
