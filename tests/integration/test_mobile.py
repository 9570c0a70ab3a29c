"""Models for phones (#37): variants of a trained Keras model built with the TensorFlow
Model Optimization Toolkit, measured with LiteRT's interpreter, checked for parity, the
smallest within the accuracy budget chosen; the Python snippet runs the chosen file and
gets the report's accuracy. On the examples' digits model (sklearn's digits as the
examples draw them, 16x16 RGB, Flatten-Dense-Dense) through the CLI, and on a generated
image data set (a small CNN) through the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hubforge import serving
from hubforge.serving import tflite_metadata
from hubforge.serving.tflite_metadata import read_metadata
from tests import cli_record
from tests.models import _run

pytestmark = pytest.mark.timeout(600)
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")

# the examples' model (examples/02-train.ipynb), trained on the digits they label
DIGITS_MODEL = """
import sys, numpy as np, tensorflow as tf
data = np.load(sys.argv[2])
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.layers.Input((16, 16, 3)),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(64, activation="relu"),
    tf.keras.layers.Dense(5, activation="softmax"),
])
model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(data["x"], data["y"], epochs=15, batch_size=16, verbose=0)
model.save(sys.argv[1] + "/1")
"""


def digits_folder(root):
    """The examples' digits as a folder of class folders (PNG), and as arrays."""
    from sklearn.datasets import load_digits

    digits = load_digits(n_class=5)
    xs = []
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        image = Image.fromarray((pixels * 255 / 16).astype("uint8")).convert("RGB")
        image = image.resize((64, 64), Image.NEAREST)
        folder = root / f"class-{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:04d}.png")
        xs.append(np.asarray(image.resize((16, 16)), dtype="float32") / 255.0)
    return np.stack(xs), digits.target


def test_the_digits_model_pruned_and_int8_is_four_times_smaller_within_a_point(tmp_path):
    x, y = digits_folder(tmp_path / "digits")
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    _run(DIGITS_MODEL, str(tmp_path / "model"), str(tmp_path / "digits.npz"))

    variants = "float,dynamic,int8,pruned-int8"
    cli = cli_record.run(
        ["serve", "optimize", str(tmp_path / "model"), "--data", str(tmp_path / "digits")]
        + ["--variants", variants, "--sparsity", "0.5", "--epochs", "2"]
        + ["--max-accuracy-loss", "1", "--clusters", "8", "--output", str(tmp_path / "out")]
        + ["--here"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "[4/4] done" in cli.stderr
    report = serving.OptimizationReport.load(tmp_path / "out" / "report.json")
    assert [v.name for v in report.variants] == variants.split(",")
    base, small = report.variant("float"), report.variant("pruned-int8")
    assert small.size_gzip_bytes * 4 <= base.size_gzip_bytes, (small, base)
    assert report.baseline_accuracy - small.accuracy <= 1.0, report.table()
    assert all(v.parity for v in report.variants), report.table()
    assert report.chosen is not None and report.chosen.size_gzip_bytes <= small.size_gzip_bytes
    assert f"chosen: {report.chosen.name}" in cli.stdout
    for v in report.variants:  # measured as on a phone's CPU
        assert v.latency_ms > 0 and v.latency_ms_all_threads > 0 and v.peak_memory_bytes > 0
    assert (tmp_path / "out" / "accuracy-vs-size.png").stat().st_size > 1000
    # every file carries TFLite metadata: the class folders' names as its labels, and the
    # inputs as the model takes them (no normalisation given: mean 0, std 1), RGB images
    assert report.metadata["files"] == {v.path: True for v in report.variants}, report.metadata
    assert report.class_names == [f"class-{i}" for i in range(5)]
    found = read_metadata(report.chosen.path)
    assert found["files"] == {"labels.txt": "".join(f"class-{i}\n" for i in range(5))}
    assert found["metadata"]["name"] == "model"
    (image,) = found["metadata"]["subgraph_metadata"][0]["input_tensor_metadata"]
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert "already in the model's range" in image["description"]

    # the Python snippet, as the user gets it, on the held-out data: the report's accuracy
    run = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "out" / "predict.py"),
            str(tmp_path / "out" / "held-out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"accuracy {report.chosen.accuracy:.2f}", run.stdout

    bad = cli_record.run(
        ["serve", "optimize", str(tmp_path / "model"), "--data", str(tmp_path / "digits")]
        + ["--variants", "float,tiny"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown ['tiny']; choose from float" in bad.stderr


GENERATED_CLASSES = ["across", "down", "diagonal"]


def generated_images(n: int, seed: int = 0):
    """12x12 noisy images of a line across, down, or on the diagonal."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 12, 12, 1)).astype("float32")
    y = rng.integers(0, 3, n)
    for image, label in zip(x, y, strict=True):
        at = rng.integers(2, 10)
        if label == 0:
            image[at, :, 0] += 1
        elif label == 1:
            image[:, at, 0] += 1
        else:
            image[np.arange(12), np.arange(12), 0] += 1
    return x, y


def test_clustered_and_qat_pass_parity_and_a_variant_over_budget_is_not_chosen(
    tmp_path, monkeypatch
):
    import tf_keras

    x, y = generated_images(600)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 1)),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(32, activation="relu"),
            tf_keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    steps, before = [], {}
    write_metadata = tflite_metadata.write_metadata

    def keeping(files, **asked):  # the files as measured, before their metadata
        before.update({str(f): f.read_bytes() for f in files})
        return write_metadata(files, **asked)

    monkeypatch.setattr(tflite_metadata, "write_metadata", keeping)
    report = serving.optimize(
        model,
        variants=["float", "clustered", "qat", "pruned"],
        data=(x, y),
        sparsity=0.95,  # too many zeros for one epoch of fine-tuning: it loses accuracy
        clusters=4,
        epochs=1,
        runs=50,
        min_agreement=0.5,
        class_names=GENERATED_CLASSES,
        normalization={"mean": 0.5, "std": 2.0},
        output=tmp_path / "out",
        progress=lambda step, total, what: steps.append((step, total, what)),
    )
    assert steps[0] == (0, 4, "float") and steps[-1] == (4, 4, "done")
    for name in ("clustered", "qat"):
        variant = report.variant(name)
        assert variant.parity and variant.agreement >= 0.9, report.table()
    assert report.variant("qat").size_bytes * 3 < report.variant("float").size_bytes
    pruned = report.variant("pruned")
    assert pruned.parity and not pruned.within_budget, report.table()
    assert report.chosen is not pruned and report.chosen.eligible
    assert "over the accuracy budget" in report.table()
    html = report._repr_html_()
    assert "<table>" in html and "chosen" in html

    # the snippets spell out the signature, the normalisation and the classes
    code = report.snippets()
    assert "(x - MEAN) / STD" in code["python"] and "MEAN, STD = 0.5, 2.0" in code["python"]
    assert '"across", "down", "diagonal"' in code["kotlin"]
    assert "Array<Array<FloatArray>>" in code["kotlin"]  # [12, 12, 1] after the batch
    assert "144 Float32 values" in code["swift"]
    # ... and the Python one runs: raw inputs (before the normalisation) give the accuracy
    held = np.load(tmp_path / "out" / "held-out.npz")
    np.savez(tmp_path / "raw.npz", x=held["x"] * 2.0 + 0.5, y=held["y"])
    run = subprocess.run(
        [sys.executable, str(tmp_path / "out" / "predict.py"), str(tmp_path / "raw.npz")],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"accuracy {report.chosen.accuracy:.2f}"
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["chosen"] == report.chosen.name

    # the class names and the normalisation are in the files (TFLite metadata), and the
    # files answer exactly as they did when measured
    assert saved["metadata"]["files"] == {v.path: True for v in report.variants}
    found = read_metadata(report.chosen.path)
    assert found["files"] == {"labels.txt": "across\ndown\ndiagonal\n"}
    graph = found["metadata"]["subgraph_metadata"][0]
    (image,), (scores,) = graph["input_tensor_metadata"], graph["output_tensor_metadata"]
    assert image["process_units"][0]["options"] == {"mean": [0.5], "std": [2.0]}
    assert image["content"]["content_properties"]["color_space"] == "GRAYSCALE"
    assert scores["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert sorted(before) == sorted(v.path for v in report.variants)
    for path, content in before.items():
        assert Path(path).read_bytes() != content
        assert np.array_equal(_answers(content, held["x"]), _answers(path, held["x"])), path


def _answers(model, x):
    """What LiteRT's interpreter answers for each row of x (a file's bytes or its path)."""
    from ai_edge_litert.interpreter import Interpreter

    given = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
    runner = Interpreter(**given).get_signature_runner("serving_default")
    (name,) = runner.get_input_details()
    return np.concatenate([next(iter(runner(**{name: row[None]}).values())) for row in x])


def test_bad_input_says_what_to_give(tmp_path, monkeypatch):
    from tests.models import VARIANT

    _run(VARIANT, str(tmp_path / "module"), "1", "good")  # a tf.Module, not Keras
    for kwargs, says in (
        ({"variants": []}, "a list of names from float"),
        ({"variants": ["float"], "data": (np.zeros((30, 5)), np.zeros(30))}, "not a Keras"),
    ):
        with pytest.raises(serving.BadRequest, match=None) as e:
            serving.optimize(tmp_path / "module", **kwargs)
        assert says in str(e.value), (kwargs, str(e.value))
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(4,))])
    for kwargs, says in (
        ({"data": (np.zeros((30, 5)), np.zeros(30))}, "inputs shaped [5]; the model takes [4]"),
        ({"data": None, "output": tmp_path}, "optimize needs data"),
        ({"data": (np.zeros((5, 4)), np.zeros(5))}, "at least 20 of each"),
        ({"data": str(tmp_path / "nowhere")}, "no such folder or .npz file"),
        ({"data": (np.zeros((30, 4)), np.zeros(30)), "sparsity": 1.5}, "sparsity=1.5"),
        ({"data": (np.zeros((30, 4)), np.zeros(30))}, "give output=FOLDER"),
        ({"data": (np.zeros((30, 4)), np.zeros(30)), "run": "later"}, "run='later': 'job'"),
    ):
        with pytest.raises(serving.BadRequest) as e:
            serving.optimize(model, **kwargs)
        assert says in str(e.value), (kwargs, str(e.value))
    # a job needs a workbench (a user's server)
    monkeypatch.delenv("HUBFORGE_USER_AREA", raising=False)
    with pytest.raises(serving.BadRequest, match="run='job' needs a workbench"):
        serving.optimize(model, data=(np.zeros((30, 4)), np.zeros(30)), run="job")
