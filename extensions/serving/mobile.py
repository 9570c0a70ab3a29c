"""Models for phones: variants of a trained Keras model, compared side by side (#37).

    report = optimize(job, variants=["float", "int8", "pruned-int8"], data=(x, y))
    report.chosen.path, report.table(), report.plot(), report.snippets()

Each variant is a ``.tflite`` file: ``float``; ``dynamic`` (int8 weights); ``int8`` (weights
and activations, calibrated on the data); ``pruned`` (a share of the weights set to zero by
magnitude, then fine-tuned), ``clustered`` (weights shared among a number of values, then
fine-tuned) and ``qat`` (fine-tuned with quantization in the loop, then int8), with the
TensorFlow Model Optimization Toolkit; and ``pruned-int8``, ``clustered-int8``. The data is
split once: ``validation_split`` of it (held out, never trained on) measures every variant's
accuracy and its agreement with the SavedModel; the rest fine-tunes and calibrates.

Every variant is measured as it would run on a phone's CPU (serving.litert_bench: LiteRT's
interpreter in a process of its own; latency p50 over ``runs`` single-sample calls on one
thread and on all, peak memory), checked for parity (the SavedModel's signature, and the
same answers on at least ``min_agreement`` of the held-out samples: a variant that silently
changes the model is refused), and the smallest (gzipped) variant within
``max_accuracy_loss`` points of the SavedModel that passes parity is chosen.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from .errors import BadRequest
from .mobile_job import in_workbench, optimize_as_job, training_data_of
from .mobile_report import OptimizationReport, Variant
from .mobile_resume import done_before, fit_callbacks, keep, resumable
from .mobile_snippets import write_python
from .mobile_variants import DEFAULT_VARIANTS, check_variants
from .tflite import SIGNATURE, resolve_model_dir

TRAINED = {"pruned": "pruned", "pruned-int8": "pruned", "clustered": "clustered"}
TRAINED |= {"clustered-int8": "clustered", "qat": "qat"}


def require_data(data: Any) -> None:
    if data is None:
        raise BadRequest(
            "optimize needs data to measure accuracy on (and to fine-tune and calibrate "
            "with): (x, y) arrays, a tf.data.Dataset of (x, y), or a folder of class folders "
            "(a job that called hubforge.distribute.save_training_data(x, y) has its own)"
        )


def load_data(data: Any, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` arrays, a ``tf.data.Dataset`` of ``(x, y)`` (batched or not), a folder of
    class folders of images, or an ``.npz`` file with ``x`` and ``y``: as (x, y) arrays."""
    require_data(data)
    if isinstance(data, str | os.PathLike):
        return _from_path(Path(data), input_shape)
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = np.asarray(data[0], dtype="float32"), np.asarray(data[1])
    elif hasattr(data, "as_numpy_iterator"):
        x, y = _from_dataset(data)
    else:
        raise BadRequest(f"data: (x, y) arrays, a tf.data.Dataset or a folder, not {data!r:.60}")
    if len(x) != len(y) or len(x) < 20:
        raise BadRequest(f"data: {len(x)} inputs and {len(y)} labels; at least 20 of each")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise BadRequest(
            f"data: inputs shaped {list(x.shape[1:])}; the model takes {list(input_shape)}"
        )
    return x, y


def _from_dataset(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for item in dataset.as_numpy_iterator():
        if not isinstance(item, tuple) or len(item) != 2:
            raise BadRequest("data: a tf.data.Dataset of (x, y) pairs")
        xs.append(np.asarray(item[0], dtype="float32"))
        ys.append(np.asarray(item[1]))
    batched = xs and xs[0].ndim > 0 and ys[0].ndim > 0
    stack = np.concatenate if batched else np.stack
    return stack(xs), stack(ys)


def _from_path(path: Path, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as found:
            if not {"x", "y"} <= set(found.files):
                raise BadRequest(f"{path}: an .npz with arrays x and y")
            return np.asarray(found["x"], dtype="float32"), np.asarray(found["y"])
    if not path.is_dir():
        raise BadRequest(f"data={str(path)!r}: no such folder or .npz file")
    import tf_keras

    height, width = input_shape[0], input_shape[1]
    mode = "grayscale" if input_shape[-1] == 1 else "rgb"
    dataset = tf_keras.utils.image_dataset_from_directory(
        str(path), image_size=(height, width), color_mode=mode, shuffle=False, batch_size=64
    )
    x, y = _from_dataset(dataset)
    return x / 255.0, y


def _split(x: np.ndarray, y: np.ndarray, held_out: float) -> tuple[tuple, tuple]:
    if not 0.05 <= held_out <= 0.5:
        raise BadRequest(f"validation_split={held_out}: from 0.05 to 0.5")
    order = np.random.default_rng(0).permutation(len(x))
    cut = len(x) - max(10, int(len(x) * held_out))
    train, test = order[:cut], order[cut:]
    return (x[train], y[train]), (x[test], y[test])


def _compile(model: Any, outputs: int) -> None:
    import tf_keras

    loss = "sparse_categorical_crossentropy" if outputs > 1 else "binary_crossentropy"
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])


def _trained(kind: str, model: Any, train: tuple, settings: dict[str, Any], resume: list) -> Any:
    """The model pruned, clustered or quantization-aware, fine-tuned on ``train`` (with the
    ``resume`` callbacks: mobile_resume) and stripped of its training wrappers."""
    import tf_keras

    tfmot = _tfmot()
    tf_keras.utils.set_random_seed(0)
    clone = tf_keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    callbacks: list = []
    if kind == "pruned":
        # masks updated every few steps from the first (the default waits 100 steps: more
        # than a short fine-tuning has)
        schedule = tfmot.sparsity.keras.ConstantSparsity(
            settings["sparsity"], begin_step=0, frequency=5
        )
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(clone, pruning_schedule=schedule)
        callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    elif kind == "clustered":
        init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
        wrapped = tfmot.clustering.keras.cluster_weights(
            clone, number_of_clusters=settings["clusters"], cluster_centroids_init=init
        )
    else:
        wrapped = tfmot.quantization.keras.quantize_model(clone)
    _compile(wrapped, model.output_shape[-1])
    wrapped.fit(
        train[0],
        train[1],
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        callbacks=[*callbacks, *resume],
        verbose=0,
    )
    if kind == "pruned":
        return tfmot.sparsity.keras.strip_pruning(wrapped)
    if kind == "clustered":
        return tfmot.clustering.keras.strip_clustering(wrapped)
    return wrapped


def _tfmot() -> Any:
    """The Model Optimization Toolkit (its import checks TensorFlow's version with
    distutils, which warns: not the caller's business)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import tensorflow_model_optimization as tfmot
    return tfmot


def _convert(
    model: Any, names: tuple[str, str], int8: bool, dynamic: bool, calibration: np.ndarray
) -> bytes:
    """The model as TFLite, with one ``serving_default`` signature named as the SavedModel's
    (``names``: its input and output), whatever the variant's wrappers renamed."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name=names[0])

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> dict[str, Any]:
        return {names[1]: model(x, training=False)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], model
    )
    if dynamic or int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8:

        def samples() -> Iterable[list[np.ndarray]]:
            for row in calibration[:200]:
                yield [row[None].astype("float32")]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _answers(content: bytes, x: np.ndarray) -> np.ndarray:
    """What the TFLite model answers for ``x``, one sample at a time (as on a phone)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner(SIGNATURE)
    (name,) = runner.get_input_details()
    rows = []
    for row in x:
        out = runner(**{name: row[None].astype("float32")})
        rows.append(
            np.concatenate([np.asarray(v, "float64").reshape(1, -1) for v in out.values()], 1)
        )
    return np.concatenate(rows)


def _signature_of(content: bytes) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner(SIGNATURE)
    inputs = {k: [int(d) for d in v["shape"][1:]] for k, v in runner.get_input_details().items()}
    outputs = {k: [int(d) for d in v["shape"][1:]] for k, v in runner.get_output_details().items()}
    return {"inputs": inputs, "outputs": outputs}


def _bench(path: Path, runs: int, threads: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hubforge.serving.litert_bench", str(path)]
        + ["--runs", str(runs), "--threads", str(threads)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise BadRequest(f"{path.name} did not run in LiteRT: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def _accuracy(answers: np.ndarray, y: np.ndarray) -> float:
    predicted = answers.argmax(1) if answers.shape[1] > 1 else (answers[:, 0] > 0.5)
    return round(100 * float(np.mean(predicted.astype(np.int64) == y.reshape(-1))), 2)


def _agreement(answers: np.ndarray, reference: np.ndarray) -> float:
    """The share of samples answered as the SavedModel answers them: the same class, or
    (one output) the same side of 0.5."""
    if reference.shape[1] > 1:
        same = answers.argmax(1) == reference.argmax(1)
    else:
        same = (answers[:, 0] > 0.5) == (reference[:, 0] > 0.5)
    return round(float(np.mean(same)), 4)


def _names(path: Path | None, model: Any) -> tuple[str, str]:
    """The input and output names of the SavedModel's serving signature (of the Keras model
    when there is no SavedModel); one input and one output only."""
    if path is not None:
        import tensorflow as tf

        signature = tf.saved_model.load(str(path)).signatures.get(SIGNATURE)
        if signature is None:
            raise BadRequest(f"{path} has no {SIGNATURE!r} signature")
        inputs, outputs = (
            list(signature.structured_input_signature[1]),
            list(signature.structured_outputs),
        )
    else:
        inputs, outputs = list(model.input_names), list(model.output_names)
    if len(inputs) != 1 or len(outputs) != 1:
        raise BadRequest(
            f"optimize takes models with one input and one output (this one: {inputs} -> "
            f"{outputs}); export_tflite converts any SavedModel"
        )
    return inputs[0], outputs[0]


def _source(source: Any) -> tuple[Path | None, Any]:
    """(SavedModel folder, Keras model) of a job, a folder, or a Keras model."""
    import tf_keras

    if isinstance(source, tf_keras.Model):
        return None, source
    from .api import model_dir_of

    path = resolve_model_dir(model_dir_of(source))
    try:
        model = tf_keras.models.load_model(str(path), compile=False)
        why = "" if isinstance(model, tf_keras.Model) else "no Keras metadata in it"
    except Exception as e:  # (another Keras' file, or damaged)
        why = str(e).splitlines()[0][:200]
    if why:
        raise BadRequest(
            f"{path} is not a Keras model tf_keras can load ({why}): optimize prunes, "
            "clusters and fine-tunes Keras models; export_tflite converts any SavedModel"
        )
    return path, model


def _output_folder(path: Path | None, output: Any) -> Path:
    if output is not None:
        folder = Path(output)
    elif path is not None:
        folder = path.parent / f"{path.name}-mobile"
    else:
        raise BadRequest("optimize(model, ...) of a Keras model in memory: give output=FOLDER")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def optimize(
    source: Any,
    variants: Iterable[str] | str = DEFAULT_VARIANTS,
    data: Any = None,
    *,
    max_accuracy_loss: float = 1.0,
    min_agreement: float = 0.9,
    validation_split: float = 0.2,
    sparsity: float = 0.5,
    clusters: int = 16,
    epochs: int = 2,
    batch_size: int = 32,
    runs: int = 200,
    class_names: list[str] | None = None,
    normalization: dict[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    progress: Any = None,
    run: str = "auto",
    gpus: int = 0,
    timeout: float | None = None,
) -> OptimizationReport:
    """Build, measure and compare ``variants`` of a trained Keras model (a finished job,
    its exported folder, or the model); see the module. ``class_names`` and
    ``normalization`` ({"mean": m, "std": s} applied to inputs before the model) go into the
    snippets; ``progress(step, total, what)`` is told as each variant is done.

    ``run="job"``: as a Hubforge job (the workbench's queue, ``gpus`` GPUs, as you; its log
    shows each variant; ``report.job`` names it; its folder ``<job>/mobile/``), waiting up
    to ``timeout`` seconds for it; ``"here"``: in this process; ``"auto"``: a job in a
    workbench when no ``output`` is given, else here."""
    wanted = check_variants(variants)
    if data is None:  # a job's own training data (distribute.save_training_data)
        data = training_data_of(source)
    settings = _settings(max_accuracy_loss, min_agreement, sparsity, clusters, epochs, batch_size)
    if run not in ("auto", "here", "job"):
        raise BadRequest(f"run={run!r}: 'job' (a Hubforge job), 'here' or 'auto'")
    if run == "job" or (run == "auto" and output is None and in_workbench()):
        require_data(data)
        asked = {"variants": wanted, **settings, "validation_split": validation_split}
        asked |= {"runs": runs, "class_names": class_names, "normalization": normalization}
        return optimize_as_job(source, data, asked, gpus, timeout)
    return _optimize_here(
        source,
        wanted,
        data,
        settings,
        validation_split,
        runs,
        output,
        progress,
        {"class_names": class_names, "normalization": normalization},
    )


def _optimize_here(
    source: Any,
    wanted: list[str],
    data: Any,
    settings: dict[str, Any],
    validation_split: float,
    runs: int,
    output: Any,
    progress: Any,
    snippet: dict[str, Any],
) -> OptimizationReport:
    """optimize in this process (``snippet``: class_names and normalization)."""
    snippet = {**snippet, "class_names": snippet["class_names"] or _folder_classes(data)}
    path, model = _source(source)
    x, y = load_data(data, tuple(model.input_shape[1:]))
    train, test = _split(x, y, validation_split)
    folder = _output_folder(path, output)
    reference = np.asarray(model.predict(test[0], verbose=0), "float64").reshape(len(test[0]), -1)
    baseline = _accuracy(reference, test[1])
    names = _names(path, model)
    float_content = _convert(model, names, False, False, train[0])
    signature = _signature_of(float_content)
    context = {
        "folder": folder,
        "train": train,
        "test": test,
        "reference": reference,
        "signature": signature,
        "names": names,
        "runs": runs,
        "settings": settings,
        "baseline": baseline,
    }
    built = _build_all(wanted, model, context, progress)
    report = OptimizationReport(
        variants=built,
        baseline_accuracy=baseline,
        settings=settings,
        folder=str(folder),
        signature=signature,
        samples=len(test[0]),
        **snippet,
        metadata=_metadata(built, context, snippet, path or model),
    )
    write_json(folder / "report.json", report.to_dict(), mode=0o644)
    np.savez(folder / "held-out.npz", x=test[0], y=test[1])  # what it was measured on
    report.plot(folder / "accuracy-vs-size.png")
    if report.chosen is not None:
        write_python(report.chosen, signature, report.class_names, report.normalization)
    return report


def _build_all(
    wanted: list[str], model: Any, context: dict[str, Any], progress: Any
) -> list[Variant]:
    """Each variant in turn (fine-tuning once per kind); a restarted job reuses those it had
    built and resumes its fine-tuning (mobile_resume)."""
    folder, settings, train = context["folder"], context["settings"], context["train"]
    trained: dict[str, Any] = {}
    built = []
    again = resumable(folder)  # a restarted job: what it did before stays done
    for step, name in enumerate(wanted):
        if progress is not None:
            progress(step, len(wanted), name)
        kind = TRAINED.get(name)
        if again and (variant := done_before(folder, name)) is not None:
            built.append(variant)
            continue
        if kind and kind not in trained:
            resume = fit_callbacks(folder, kind, settings["epochs"]) if again else []
            trained[kind] = _trained(kind, model, train, settings, resume)
        built.append(_variant(name, trained.get(kind, model), context))
        if again:
            keep(folder, built[-1])
    if progress is not None:
        progress(len(wanted), len(wanted), "done")
    return built


def _folder_classes(data: Any) -> list[str] | None:
    """The class names of a folder of class folders (in the order that labels them), or
    None for other data."""
    if not isinstance(data, str | os.PathLike) or not Path(data).is_dir():
        return None
    found = sorted(p.name for p in Path(data).iterdir() if p.is_dir())
    return [name for name in found if not name.startswith(".")] or None


def _metadata(built: list[Variant], c: dict[str, Any], snippet: dict, source: Any) -> dict:
    """TFLite metadata (the class names, the normalisation) written into every variant's
    file, or why not (serving.tflite_metadata; measured and parity-checked before, the
    files answer the same with it)."""
    from .tflite_metadata import write_metadata

    ((_, shape),) = c["signature"]["inputs"].items()
    if isinstance(source, Path):  # a SavedModel's version folder, or the model's own
        name = source.parent.name if source.name.isdigit() else source.name
    else:
        name = str(getattr(source, "name", "") or "model")
    return write_metadata(
        [Path(v.path) for v in built],
        name=name,
        description=f"{name}, optimized for phones by Hubforge (serving.optimize)",
        class_names=snippet["class_names"],
        normalization=snippet["normalization"],
        input_kind="image" if len(shape) == 3 and shape[-1] in (1, 3) else "tensor",
    )


def _settings(
    loss: Any, agreement: Any, sparsity: Any, clusters: Any, epochs: Any, batch: Any
) -> dict:
    checks = (
        ("max_accuracy_loss", loss, 0, 100),
        ("min_agreement", agreement, 0, 1),
        ("sparsity", sparsity, 0.05, 0.95),
        ("clusters", clusters, 2, 256),
        ("epochs", epochs, 1, 100),
        ("batch_size", batch, 1, 4096),
    )
    for key, value, low, high in checks:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise BadRequest(f"{key}={value!r:.30}: a number from {low} to {high}")
    return {
        "max_accuracy_loss": float(loss),
        "min_agreement": float(agreement),
        "sparsity": float(sparsity),
        "clusters": int(clusters),
        "epochs": int(epochs),
        "batch_size": int(batch),
    }


def _variant(name: str, model: Any, c: dict[str, Any]) -> Variant:
    """One variant converted, written, measured and judged (``c``: what optimize knows)."""
    int8 = name in ("int8", "pruned-int8", "clustered-int8", "qat")
    dynamic = name in ("dynamic", "qat")  # (QAT's model carries its own ranges)
    content = _convert(model, c["names"], int8 and name != "qat", dynamic, c["train"][0])
    folder, test, settings = c["folder"], c["test"], c["settings"]
    path = folder / f"{name}.tflite"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    answers = _answers(content, test[0])
    one = _bench(path, c["runs"], 1)
    every = _bench(path, c["runs"], os.cpu_count() or 1)
    accuracy, agreement = _accuracy(answers, test[1]), _agreement(answers, c["reference"])
    same_signature = _signature_of(content) == c["signature"]
    return Variant(
        name=name,
        path=str(path),
        size_bytes=len(content),
        size_gzip_bytes=len(gzip.compress(content, 9)),
        accuracy=accuracy,
        latency_ms=round(one["p50_ms"], 4),
        latency_ms_all_threads=round(every["p50_ms"], 4),
        peak_memory_bytes=one["peak_memory_bytes"],
        agreement=agreement,
        parity=bool(same_signature and agreement >= settings["min_agreement"]),
        within_budget=bool(c["baseline"] - accuracy <= settings["max_accuracy_loss"]),
        note="" if same_signature else "its signature differs from the SavedModel's",
    )
