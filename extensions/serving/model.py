"""One loaded SavedModel version: its signatures as TF Serving reads them, metadata, calls.

Signatures come from the SavedModel's ``serve`` MetaGraphDef (TF Serving's view: tensor names,
``method_name``, ``defaults``). A TF2 SavedModel runs through ``tf.saved_model.load``; a TF1 one
(no object graph) runs in a session, signature by signature, as TF Serving does: a signature
whose tensors are not in the graph is left out and the others serve, and values are fed without
a shape check (TF Serving feeds ``[2.0, 3.0]`` to a ``[-1, 1]`` input).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadRequest, NotFound
from .tensors import InputSpec, prepare, to_array

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _dtype_name(dtype: Any) -> str:
    """TF Serving's spelling: the DataType proto enum (DT_FLOAT, DT_INT64, DT_STRING...)."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _type_word(dtype: Any) -> str:
    """TensorFlow's DataTypeString: float, int64, string..."""
    return _dtype_name(dtype)[3:].lower()


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature, from its TensorInfo."""

    key: str
    tensor_name: str
    dtype: Any  # tf.DType
    shape: Any  # tf.TensorShape


def _spec(key: str, info: Any) -> TensorSpec:
    import tensorflow as tf

    shape = (
        tf.TensorShape(None)
        if info.tensor_shape.unknown_rank
        else tf.TensorShape([None if d.size < 0 else d.size for d in info.tensor_shape.dim])
    )
    return TensorSpec(key, info.name, tf.dtypes.as_dtype(info.dtype), shape)


def plain_spec(spec: TensorSpec) -> InputSpec:
    """What converting client values for ``spec`` needs, without TensorFlow objects."""
    import tensorflow as tf

    try:
        dtype = np.dtype(spec.dtype.as_numpy_dtype)
    except (KeyError, TypeError):  # resource, variant: nothing JSON can carry
        dtype = None
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    return InputSpec(
        spec.key,
        spec.dtype == tf.string,
        spec.dtype == tf.bool,
        dtype,
        shape,
        _type_word(spec.dtype),
    )


def read_meta_graph(path: Path) -> Any:
    """The ``serve`` MetaGraphDef of ``path/saved_model.pb``; ValueError when there is none."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as e:  # a damaged file
        raise ValueError(f"{path / 'saved_model.pb'} is not a SavedModel: {e}") from None
    for graph in saved.meta_graphs:
        if SERVE_TAG in graph.meta_info_def.tags:
            return graph
    raise ValueError(f"{path} has no MetaGraph tagged '{SERVE_TAG}' (export with model.export())")


class Signature:
    """A SignatureDef and how to run it: ``runner(tensors) -> outputs`` (numpy)."""

    def __init__(self, name: str, info: Any, runner: Any, check_shapes: bool):
        self.name = name
        self.info = info
        self.method_name = info.method_name or PREDICT_METHOD
        self.inputs = {k: _spec(k, v) for k, v in sorted(info.inputs.items())}
        self.outputs = {k: _spec(k, v) for k, v in sorted(info.outputs.items())}
        self.plain = {k: plain_spec(v) for k, v in self.inputs.items()}  # for codec.py too
        self._runner = runner
        self.check_shapes = check_shapes  # TF2 functions check; TF1 graphs take any shape

    def metadata(self) -> dict[str, Any]:
        from google.protobuf import json_format

        return json_format.MessageToDict(
            self.info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )

    def tensor(self, name: str, value: Any) -> Any:
        """A client value as an array of the input's dtype (and shape, for TF2), or BadRequest."""
        return to_array(self.plain[name], value, self.check_shapes)

    def prepare(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Check names, dtypes and shapes; the request's tensors, or BadRequest."""
        return prepare(self.name, self.plain, inputs, self.check_shapes)

    def call(self, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            return self._runner(tensors)
        except tf.errors.InvalidArgumentError as e:  # the values do not fit the graph
            raise BadRequest(e.message.split("\n")[0]) from None

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.call(self.prepare(inputs))

    @property
    def batchable(self) -> bool:
        """Every input and output has a leading batch dimension of unknown size."""
        specs = [*self.inputs.values(), *self.outputs.values()]
        return all(s.shape.rank and s.shape[0] is None for s in specs)


def _function_runner(function: Any) -> Any:
    def run(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        outputs = function(**tensors)
        return {k: v.numpy() for k, v in outputs.items()}

    return run


class _Graph:
    """A TF1 SavedModel in its own graph and session; one callable per signature."""

    def __init__(self, path: Path):
        import tensorflow as tf

        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            tf.compat.v1.saved_model.loader.load(self.session, [SERVE_TAG], str(path))

    def runner(self, info: Any) -> Any:
        from tensorflow.core.protobuf import config_pb2

        keys = sorted(info.inputs)
        outs = sorted(info.outputs)
        for name in [info.inputs[k].name for k in keys] + [info.outputs[k].name for k in outs]:
            self.graph.get_tensor_by_name(name)  # KeyError/ValueError: not in this graph
        # A callable made from options feeds values as they are (no Python-side shape check).
        function = self.session._make_callable_from_options(
            config_pb2.CallableOptions(
                feed=[info.inputs[k].name for k in keys],
                fetch=[info.outputs[k].name for k in outs],
            )
        )

        def run(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
            values = function(*[np.asarray(tensors[k]) for k in keys])
            return dict(zip(outs, values, strict=True))

        return run


class ModelVersion:
    """A SavedModel directory ``<base>/<version>/`` loaded with its signatures."""

    def __init__(self, path: str | Path, version: int):
        self.path = Path(path)
        self.version = version
        self.meta_graph = read_meta_graph(self.path)
        self.skipped: dict[str, str] = {}  # signatures that cannot run, and why
        self.signatures = self._load()
        if not self.signatures:
            why = "; ".join(f"{n}: {e}" for n, e in self.skipped.items())
            raise ValueError(
                f"{self.path} has no signature that can serve"
                + (f" ({why})" if why else ": export with model.export()")
            )
        self.warm_up()

    def _load(self) -> dict[str, Signature]:
        import tensorflow as tf

        infos = {
            n: i for n, i in self.meta_graph.signature_def.items() if not n.startswith("__")
        }  # __saved_model_init_op is TF's, not a serving signature
        failure: Exception | None = None
        if self.meta_graph.object_graph_def.nodes:  # TF2: its functions, shapes checked
            try:
                self.loaded = tf.saved_model.load(str(self.path))
                return {
                    n: Signature(n, infos[n], _function_runner(f), check_shapes=True)
                    for n, f in self.loaded.signatures.items()
                    if n in infos
                }
            except Exception as e:  # e.g. one inconsistent signature: run the graph instead
                failure = e
        try:
            graph = _Graph(self.path)
        except Exception as e:
            raise (failure or e) from None
        self.loaded = graph  # kept alive with the version
        signatures = {}
        for name, info in sorted(infos.items()):
            try:
                signatures[name] = Signature(name, info, graph.runner(info), check_shapes=False)
            except Exception as e:  # TF Serving serves the other signatures
                self.skipped[name] = str(e).split("\n")[0]
        return signatures

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
            why = f" ({self.skipped[name]})" if name in self.skipped else ""
            raise BadRequest(
                f"No signature was found with the name: {name}{why}; this model has "
                f"{', '.join(sorted(self.signatures))}"
            )
        return self.signatures[name]

    def metadata(self) -> dict[str, Any]:
        """TF Serving's ``SignatureDefMap`` of the version, every signature as exported."""
        from google.protobuf import json_format

        defs = {
            n: json_format.MessageToDict(
                i, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for n, i in self.meta_graph.signature_def.items()
        }
        return {"signature_def": {"signature_def": defs}}


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
