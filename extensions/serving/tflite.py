"""Mobile export: a SavedModel to a ``.tflite`` file, with a size and accuracy report.

    report = export_tflite(model_dir, quantize="int8", representative_data=x_train[:200],
                           sample_data=x_test, labels=y_test)

The report compares the TFLite model with the SavedModel on sample data (the largest output
difference, and the accuracy of both when labels are given) and is saved next to the file
as ``<file>.json``.
"""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from .errors import BadRequest
from .model import find_versions

QUANTIZE = ("none", "dynamic", "float16", "int8")
SIGNATURE = "serving_default"
INT8_NEEDS_DATA = (
    'quantize="int8" calibrates on typical inputs: pass representative_data= '
    "(e.g. 100-500 training samples)"
)


@dataclass
class TFLiteReport:
    """What the export produced and how much it changed the model's answers."""

    path: str
    quantize: str
    size_bytes: int
    saved_model_bytes: int
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    accuracy_saved_model: float | None = None
    accuracy_tflite: float | None = None
    sample_source: str = "given"

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / self.saved_model_bytes

    @property
    def accuracy_change(self) -> float | None:
        if self.accuracy_tflite is None or self.accuracy_saved_model is None:
            return None
        return self.accuracy_tflite - self.accuracy_saved_model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "size_ratio": self.size_ratio,
            "accuracy_change": self.accuracy_change,
        }

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) lines, shared by the text and HTML views."""
        rows = [
            ("file", self.path),
            ("quantization", self.quantize),
            (
                "size",
                f"{_size(self.size_bytes)} ({self.size_ratio:.0%} of the SavedModel's "
                f"{_size(self.saved_model_bytes)})",
            ),
            (
                "largest output difference",
                f"{self.max_abs_diff:.3g} (mean {self.mean_abs_diff:.3g}, "
                f"{self.samples} {self.sample_source} samples)",
            ),
        ]
        if self.accuracy_change is not None:
            rows.append(
                (
                    "accuracy",
                    f"{self.accuracy_tflite:.2%} vs {self.accuracy_saved_model:.2%} "
                    f"({self.accuracy_change:+.2%})",
                )
            )
        return rows

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        bar = (
            "<div style='width:240px;background:#eee'><div style='width:"
            f"{min(self.size_ratio, 1) * 100:.1f}%;background:#4c78a8;height:8px'></div></div>"
        )
        return f"<table>{cells}</table>{bar}"


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def resolve_model_dir(model_dir: str | os.PathLike) -> Path:
    """A SavedModel folder, or a TF Serving base folder (its newest version)."""
    path = Path(model_dir)
    if (path / "saved_model.pb").is_file():
        return path
    versions = find_versions(path) if path.is_dir() else {}
    if versions:
        return versions[max(versions)]
    raise BadRequest(
        f"{model_dir} is not a SavedModel (no saved_model.pb) nor a folder of versions: "
        "pass the folder model.save() or a job exported"
    )


def _inputs(signature: Any) -> dict[str, Any]:
    return signature.structured_input_signature[1]


def _as_feed(data: Any, specs: dict[str, Any], what: str) -> dict[str, np.ndarray]:
    """Sample data (an array for one input, or a dict by input name) as float arrays."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(specs))
        missing = sorted(set(specs) - set(data))
        if unknown or missing:
            raise BadRequest(
                f"{what}: the model's inputs are {sorted(specs)}"
                + (f"; unknown {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
            )
        feed = data
    elif len(specs) == 1:
        feed = {next(iter(specs)): data}
    else:
        raise BadRequest(f"{what}: the model has several inputs; pass a dict {sorted(specs)}")
    arrays = {}
    for name, value in feed.items():
        spec = specs[name]
        try:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"{what}[{name!r}]: not {spec.dtype.name} numbers ({e})") from None
        expected = spec.shape.as_list()
        if array.ndim != len(expected) or any(
            d is not None and d != a for d, a in zip(expected[1:], array.shape[1:], strict=False)
        ):
            raise BadRequest(
                f"{what}[{name!r}] has shape {list(array.shape)}; the model takes "
                f"{['N' if d is None else d for d in expected]} (N samples)"
            )
        arrays[name] = array
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1 or 0 in counts:
        raise BadRequest(f"{what}: every input needs the same, non-zero number of samples")
    return arrays


def _random_feed(specs: dict[str, Any], n: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feed = {}
    for name, spec in specs.items():
        if not spec.dtype.is_floating:
            raise BadRequest(
                f"Input {name!r} is {spec.dtype.name}: pass sample_data= to compare the models"
            )
        shape = [n] + [d or 1 for d in spec.shape.as_list()[1:]]
        feed[name] = rng.standard_normal(shape).astype(spec.dtype.as_numpy_dtype)
    return feed


def _converter(path: Path, quantize: str, representative: dict[str, np.ndarray] | None) -> Any:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(path), signature_keys=[SIGNATURE])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        n = len(next(iter(representative.values())))

        def samples() -> Iterable[dict[str, np.ndarray]]:
            for i in range(n):
                yield {k: v[i : i + 1] for k, v in representative.items()}

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def _flat(outputs: dict[str, Any]) -> np.ndarray:
    return np.concatenate(
        [np.asarray(outputs[k], dtype=np.float64).reshape(len(outputs[k]), -1) for k in outputs],
        axis=1,
    )


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    predicted = outputs.argmax(axis=1) if outputs.shape[1] > 1 else (outputs[:, 0] > 0.5)
    return float(np.mean(predicted.astype(np.int64) == labels.reshape(-1).astype(np.int64)))


def _samples(
    specs: Any, representative: Any, sample_data: Any, labels: Any
) -> tuple[dict[str, np.ndarray], str, np.ndarray | None]:
    """The inputs the report measures on, where they came from, and their labels."""
    if sample_data is not None:
        sample, source = _as_feed(sample_data, specs, "sample_data"), "given"
    elif representative is not None:
        sample, source = representative, "representative"
    else:
        sample, source = _random_feed(specs), "random"
    if labels is not None:
        labels = np.asarray(labels)
        count = len(next(iter(sample.values())))
        if len(labels) != count:
            raise BadRequest(_labels_mismatch(len(labels), count))
    return sample, source, labels


def _target(path: Path, output: Any, quantize: str) -> Path:
    """Where the converted model goes: ``output``, default beside the model."""
    return Path(output) if output else path.with_name(f"{path.name}-{quantize}.tflite")


def _cannot_write(target: Path, e: OSError) -> BadRequest:
    return BadRequest(
        f"cannot write {target} ({e.strerror or e}): give output= (--output) a path in "
        "a folder of yours"
    )


def _check_writable(target: Path) -> None:
    """Refuse a target whose folder cannot be made or written before the conversion runs
    (an anonymous file is made there and gone at once: nothing is left behind)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as e:
        raise _cannot_write(target, e) from None


def _count(data: Any) -> int | None:
    """How many samples arrays (one, or a dict by input name) hold; None when unsure."""
    arrays = list(data.values()) if isinstance(data, dict) else [data]
    counts = {len(a) for a in arrays if isinstance(a, np.ndarray) and a.ndim}
    return counts.pop() if len(counts) == 1 else None


def _check_arguments(quantize: str, representative: Any, sample_data: Any, labels: Any) -> None:
    """The mistakes the arguments alone show, said before TensorFlow loads (seconds)."""
    if quantize not in QUANTIZE:
        raise BadRequest(f"quantize={quantize!r}: choose one of {', '.join(QUANTIZE)}")
    if quantize == "int8" and representative is None:
        raise BadRequest(INT8_NEEDS_DATA)
    if labels is None:
        return
    if not hasattr(labels, "__len__") or np.ndim(labels) == 0:
        raise BadRequest("labels: one class id per sample, as a list or an array")
    given = sample_data if sample_data is not None else representative
    count = None if given is None else _count(given)
    if count is not None and len(labels) != count:
        raise BadRequest(_labels_mismatch(len(labels), count))


def _labels_mismatch(labels: int, samples: int) -> str:
    return f"labels has {labels} entries for {samples} samples: one label per sample"


def _write_model(content: bytes, target: Path) -> Path:
    """The converted model, written atomically to ``target``."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(content)
        os.replace(tmp, target)
    except OSError as e:  # a model folder that is not yours, a full disk...
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _cannot_write(target, e) from None
    return target


def _outputs_of_both(
    tf: Any, signature: Any, content: bytes, sample: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """What the SavedModel and the TFLite model answer for ``sample`` (flattened)."""
    expected = _flat({k: v.numpy() for k, v in signature(**sample).items()})
    with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated": still shipped
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content)
    runner = interpreter.get_signature_runner(SIGNATURE)
    return expected, _flat(runner(**sample))


def export_tflite(
    model_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    quantize: str = "none",
    representative_data: Any = None,
    sample_data: Any = None,
    labels: Any = None,
) -> TFLiteReport:
    """Convert the SavedModel at ``model_dir`` (or the newest version under it) to TFLite.

    ``quantize``: "none", "dynamic" (int8 weights), "float16" (half-size weights) or "int8"
    (weights and activations; needs ``representative_data``, ~100 typical inputs).
    ``sample_data`` (default: the representative data, else random inputs) and optional
    ``labels`` (class ids) measure what the conversion changed. Writes ``output`` (default
    ``<model_dir>-<quantize>.tflite``) and the report as ``<output>.json``.
    """
    _check_arguments(quantize, representative_data, sample_data, labels)
    path = resolve_model_dir(model_dir)
    target = _target(path, output, quantize)
    _check_writable(target)
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if SIGNATURE not in loaded.signatures:
        raise BadRequest(f"{path} has no {SIGNATURE!r} signature to export")
    signature = loaded.signatures[SIGNATURE]
    specs = _inputs(signature)
    representative = (
        None
        if representative_data is None
        else _as_feed(representative_data, specs, "representative_data")
    )
    sample, source, labels = _samples(specs, representative, sample_data, labels)
    try:
        content = _converter(path, quantize, representative).convert()
    except Exception as e:  # the converter's errors are long; keep the first line
        raise BadRequest(f"TFLite could not convert {path}: {str(e).splitlines()[0]}") from None
    _write_model(content, target)
    expected, got = _outputs_of_both(tf, signature, content, sample)
    diff = np.abs(expected - got)
    report = TFLiteReport(
        path=str(target),
        quantize=quantize,
        size_bytes=len(content),
        saved_model_bytes=_dir_size(path),
        samples=len(expected),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        sample_source=source,
    )
    if labels is not None:
        report.accuracy_saved_model = _accuracy(expected, labels)
        report.accuracy_tflite = _accuracy(got, labels)
    write_json(Path(f"{target}.json"), report.to_dict(), mode=0o644)
    return report
