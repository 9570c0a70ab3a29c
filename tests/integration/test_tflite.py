"""Mobile export with the real TFLite converter, checked by an independent interpreter run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import classifier_model

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1")

# Runs each .tflite file the way a phone app would (raw interpreter, no Hubforge code).
CHECK = """
import json, sys, numpy as np, tensorflow as tf
x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
result = {}
for path in sys.argv[3:]:
    interpreter = tf.lite.Interpreter(model_path=path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    probabilities = interpreter.get_tensor(out["index"])
    result[path] = float(np.mean(probabilities.argmax(axis=1) == y))
print(json.dumps(result))
"""


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "serve", "export-tflite", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    return classifier_model(tmp_path_factory.mktemp("tflite") / "clf")


def test_every_quantization_writes_a_smaller_working_model(classifier):
    base = classifier.parent
    reports = {}
    for mode in ("none", "dynamic", "float16", "int8"):
        run = export(
            str(base),  # a folder of versions: the newest is exported
            "--quantize",
            mode,
            "--representative",
            str(base / "x.npy"),
            "--labels",
            str(base / "y.npy"),
        )
        assert run.returncode == 0, run.stderr
        path = base / f"1-{mode}.tflite"
        assert f"file                       {path}" in run.stdout
        assert "accuracy" in run.stdout and "of the SavedModel's" in run.stdout
        reports[mode] = json.loads(Path(f"{path}.json").read_text())
        assert reports[mode]["size_bytes"] == path.stat().st_size

    none, dynamic, f16, int8 = (reports[m] for m in ("none", "dynamic", "float16", "int8"))
    assert none["size_bytes"] < none["saved_model_bytes"] / 2
    assert dynamic["size_bytes"] < none["size_bytes"] * 0.5
    assert f16["size_bytes"] < none["size_bytes"] * 0.75
    assert int8["size_bytes"] < none["size_bytes"] * 0.5
    assert none["max_abs_diff"] < 1e-5 and none["accuracy_change"] == 0
    for report in (dynamic, f16, int8):
        assert 0 < report["max_abs_diff"] < 0.1
        assert report["samples"] == 200 and report["sample_source"] == "representative"
        assert report["accuracy_change"] >= -0.05

    check = subprocess.run(
        [sys.executable, "-c", CHECK, str(base / "x.npy"), str(base / "y.npy")]
        + [r["path"] for r in reports.values()],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        check=True,
    )
    agreement = json.loads(check.stdout.strip().splitlines()[-1])
    for mode, report in reports.items():
        assert agreement[report["path"]] == pytest.approx(report["accuracy_tflite"]), mode
        assert agreement[report["path"]] >= 0.95, mode


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantize", "int8"], 'quantize="int8" calibrates on typical inputs'),
        (["--samples", "{base}/y.npy"], "sample_data['dense_input'] has shape [200]"),
        (["--labels", "{base}/y.npy", "--samples", "{base}/x10.npy"], "labels has 200 entries"),
        (["--representative", "{base}/missing.npy"], "--representative"),
        # a folder that cannot be written (here: a file stands where the folder would be)
        (["--output", "{base}/x.npy/m.tflite"], "give output= (--output) a path in a folder"),
    ],
)
def test_mistakes_are_explained(classifier, args, message):
    import numpy as np

    base = classifier.parent
    np.save(base / "x10.npy", np.load(base / "x.npy")[:10])
    run = export(str(classifier), *[a.format(base=base) for a in args])
    assert run.returncode == 2
    assert message in run.stderr
    assert not list(base.glob("1-*.tflite.tmp"))


def test_not_a_model(tmp_path):
    run = export(str(tmp_path))
    assert run.returncode == 2 and "is not a SavedModel" in run.stderr
    run = export(str(tmp_path), "--quantize", "int4")
    assert run.returncode == 2 and "invalid choice: 'int4'" in run.stderr
