"""export_tflite says the mistakes its arguments alone show at once, before TensorFlow loads
(seconds of waiting, and a whole model load, for a typo), and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# In a fresh interpreter: each case's message, and whether TensorFlow had been imported.
PROBE = """
import json, sys
import numpy as np
from hubforge.serving import BadRequest, export_tflite
model, cases = sys.argv[1], json.loads(sys.argv[2])
x = np.zeros((20, 4), np.float32)
arrays = {"x": x, "x10": x[:10], "y": np.zeros(20), "dict": {"a": x[:5], "b": x[:5]}}
answers = {}
for name, kwargs in cases.items():
    kwargs = {k: arrays.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    try:
        export_tflite(model, **kwargs)
        answers[name] = None
    except BadRequest as e:
        answers[name] = str(e)
answers["tensorflow imported"] = "tensorflow" in sys.modules
print(json.dumps(answers))
"""

CASES = {
    "int8 without data": ({"quantize": "int8"}, 'quantize="int8" calibrates on typical inputs'),
    "unknown mode": ({"quantize": "int4"}, "quantize='int4': choose one of none, dynamic"),
    "labels for other samples": (
        {"sample_data": "x10", "labels": "y"},
        "labels has 20 entries for 10 samples: one label per sample",
    ),
    "labels for other representative data": (
        {"quantize": "dynamic", "representative_data": "dict", "labels": "y"},
        "labels has 20 entries for 5 samples",
    ),
    "one label": ({"sample_data": "x", "labels": 3}, "labels: one class id per sample"),
    "output under a file": (
        {"output": "{tmp}/a-file/m.tflite"},
        "give output= (--output) a path in a folder of yours",
    ),
}


def test_mistakes_in_the_arguments_are_said_before_tensorflow_loads(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"")  # found as a SavedModel, never loaded
    (tmp_path / "a-file").write_text("a file where the output's folder would be")
    cases = {
        name: {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in kw.items()}
        for name, (kw, _) in CASES.items()
    }
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(model), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout.strip().splitlines()[-1])
    for name, (_, message) in CASES.items():
        assert answers[name] is not None and message in answers[name], (name, answers[name])
    assert answers["tensorflow imported"] is False
    # nothing written anywhere: no model, no report, no temporary file
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a-file", "model", "saved_model.pb"]


def test_labels_as_a_column_are_still_one_per_sample():
    """(N, 1) labels, as Keras users often hold them, count N samples as before."""
    from hubforge.serving.tflite import _check_arguments

    x = np.zeros((20, 4), np.float32)
    _check_arguments("none", None, x, np.zeros((20, 1)))  # no error
    _check_arguments("none", None, [[0.0] * 4] * 7, list(range(20)))  # a list: checked later
