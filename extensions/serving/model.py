"""One loaded SavedModel version: its signatures, their metadata, and predict."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadRequest, NotFound

DEFAULT_SIGNATURE = "serving_default"


def _dtype_name(dtype: Any) -> str:
    """TF Serving's spelling: the DataType proto enum (DT_FLOAT, DT_INT64, DT_STRING...)."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _shape(spec: Any) -> dict[str, Any]:
    if spec.shape.rank is None:
        return {"dim": [], "unknown_rank": True}
    return {
        "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape],
        "unknown_rank": False,
    }


class Signature:
    def __init__(self, name: str, function: Any):
        self.name = name
        self.function = function
        _, kwargs = function.structured_input_signature
        self.inputs: dict[str, Any] = dict(kwargs)
        self.outputs: dict[str, Any] = dict(function.structured_outputs)

    def metadata(self) -> dict[str, Any]:
        def describe(specs: dict[str, Any]) -> dict[str, Any]:
            return {
                k: {"dtype": _dtype_name(s.dtype), "tensor_shape": _shape(s), "name": k}
                for k, s in specs.items()
            }

        return {
            "inputs": describe(self.inputs),
            "outputs": describe(self.outputs),
            "method_name": "tensorflow/serving/predict",
        }

    def tensor(self, name: str, value: Any) -> Any:
        """A client value as a tensor of the input's dtype and shape, or BadRequest."""
        import tensorflow as tf

        spec = self.inputs[name]
        if spec.dtype == tf.string:
            value = _decode_b64(value)
        try:
            array = np.asarray(value, dtype=object if spec.dtype == tf.string else None)
            tensor = tf.convert_to_tensor(array, dtype=spec.dtype)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            raise BadRequest(f"Input '{name}' is not {_dtype_name(spec.dtype)}: {e}") from None
        if not spec.shape.is_compatible_with(tensor.shape):
            raise BadRequest(
                f"Input '{name}' has shape {list(tensor.shape)} but the model expects "
                f"{[-1 if d is None else d for d in spec.shape]}"
            )
        return tensor

    def prepare(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Check names, dtypes and shapes; the request's tensors, or BadRequest."""
        missing = sorted(set(self.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(self.inputs))
        if missing or extra:
            raise BadRequest(
                f"Signature '{self.name}' takes inputs {sorted(self.inputs)}; "
                + (f"missing {missing}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unknown {extra}" if extra else "")
            )
        return {k: self.tensor(k, v) for k, v in inputs.items()}

    def call(self, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        outputs = self.function(**tensors)
        return {k: v.numpy() for k, v in outputs.items()}

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.call(self.prepare(inputs))

    @property
    def batchable(self) -> bool:
        """Every input and output has a leading batch dimension of unknown size."""
        specs = [*self.inputs.values(), *self.outputs.values()]
        return all(s.shape.rank and s.shape[0] is None for s in specs)


def _decode_b64(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise BadRequest('Binary values are written {"b64": "<base64>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise BadRequest('Invalid base64 in a {"b64": ...} value') from None
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


class ModelVersion:
    """A SavedModel directory ``<base>/<version>/`` loaded with its signatures."""

    def __init__(self, path: str | Path, version: int):
        import tensorflow as tf

        self.path = Path(path)
        self.version = version
        self.loaded = tf.saved_model.load(str(self.path))
        self.signatures = {n: Signature(n, f) for n, f in self.loaded.signatures.items()}
        if not self.signatures:
            raise ValueError(f"{self.path} has no serving signatures: export with model.save()")
        self.warm_up()

    def warm_up(self) -> int:
        """Call the model before it serves: TF Serving's warm-up requests
        (``assets.extra/tf_serving_warmup_requests``) where present, else one row of zeros
        through the default signature when its inputs are numbers. ValueError when a call
        fails; returns how many calls ran."""
        file = self.path / "assets.extra" / WARMUP_FILE
        calls = _warmup_requests(file) if file.is_file() else _zero_request(self)
        for signature, inputs in calls:
            try:
                self.signature(signature).call(inputs)
            except Exception as e:  # any failure of the model's own code
                raise ValueError(
                    f"the warm-up call of signature '{signature}' failed: {e}"
                ) from None
        return len(calls)

    def signature(self, name: str | None) -> Signature:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise BadRequest(
                f"No signature '{name}'; this model has {', '.join(sorted(self.signatures))}"
            )
        return self.signatures[name]

    def metadata(self) -> dict[str, Any]:
        return {
            "signature_def": {
                "signature_def": {n: s.metadata() for n, s in self.signatures.items()}
            }
        }


WARMUP_FILE = "tf_serving_warmup_requests"


def _zero_request(version: ModelVersion) -> list[tuple[str, dict[str, Any]]]:
    """One row of zeros for the default signature (none when an input is not numeric)."""
    import tensorflow as tf

    name = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in version.signatures else ""
    name = name or sorted(version.signatures)[0]
    inputs = {}
    for key, spec in version.signatures[name].inputs.items():
        if spec.shape.rank is None or not (spec.dtype.is_floating or spec.dtype.is_integer):
            return []
        shape = [1 if d is None else d for d in spec.shape]
        inputs[key] = tf.zeros(shape, dtype=spec.dtype)
    return [(name, inputs)]


def _warmup_requests(file: Path, limit: int = 100) -> list[tuple[str, dict[str, Any]]]:
    """TF Serving's warm-up file: a TFRecord of PredictionLog protos (predict requests are
    replayed; the file is read only when tensorflow-serving-api is installed)."""
    import tensorflow as tf

    try:
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        return []
    calls = []
    for raw in tf.data.TFRecordDataset(str(file)).take(limit):
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            continue
        request = log.predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        calls.append((request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs))
    return calls


def find_versions(base: str | Path) -> dict[int, Path]:
    """Version folders of a TF Serving model base path (numeric names with a saved_model.pb)."""
    base = Path(base)
    if not base.is_dir():
        raise NotFound(f"Model base path {base} does not exist")
    return {
        int(p.name): p
        for p in base.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").is_file()
    }
