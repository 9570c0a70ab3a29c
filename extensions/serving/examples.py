"""TF Serving's classify and regress APIs: tf.Example requests from JSON, results to JSON.

A request is ``{"signature_name": ..., "context": {...}, "examples": [{...}, ...]}``; each
feature value is a number, a string, ``{"b64": ...}`` or a list of them, typed as TF Serving
types them (util/json_tensor.cc AddValueToFeature): decimals are floats, whole numbers and
booleans int64, strings and b64 bytes. The context's features are merged into every example
(the example's own value wins). The signature gets the serialized examples as its one input.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from .errors import BadRequest
from .model import CLASSIFY_METHOD, REGRESS_METHOD, ModelVersion, Signature
from .protocol import decimal

INT64_MAX = 2**63 - 1


def _kind(value: Any, feature: str) -> tuple[str, Any]:
    if isinstance(value, bool):
        return "int64_list", int(value)
    if isinstance(value, int):
        if value > INT64_MAX or value < -(2**63):
            raise BadRequest(f"Feature: {feature} has uint64_t element. Only int64_t is supported.")
        return "int64_list", value
    if isinstance(value, float):
        return "float_list", value
    if isinstance(value, str):
        return "bytes_list", value.encode()
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return "bytes_list", base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise BadRequest(f'Feature: {feature} has invalid base64 in {{"b64": ...}}') from None
    kind = {type(None): "Null", list: "Array", dict: "Object"}.get(type(value), type(value))
    raise BadRequest(f"Feature: {feature} has element with unexpected JSON type: {kind}")


Features = dict[str, tuple[str | None, list[Any]]]  # name -> (kind, values)


def features_from_json(value: Any) -> Features:
    """The features of one example from a JSON object (name -> (kind, values)), or
    BadRequest with TF Serving's message."""
    if not isinstance(value, dict):
        kind = {list: "Array", str: "String", type(None): "Null"}.get(type(value), "Number")
        raise BadRequest(f"Example must be JSON object but got JSON {kind}")
    features: Features = {}
    for name, content in value.items():
        values = content if isinstance(content, list) else [content]
        kind: str | None = None
        items = []
        for item in values:
            item_kind, item_value = _kind(item, name)
            if kind not in (None, item_kind):
                raise BadRequest(
                    f"Unexpected element type in feature: {name} expecting type: "
                    f"{kind.removesuffix('_list')}"
                )
            kind = item_kind
            items.append(item_value)
        features[name] = (kind, items)
    return features


# tf.train.Example on the wire (tensorflow/core/example/{example,feature}.proto), written
# here so that decoding a request never needs TensorFlow (the codec process has none):
# Example{features=1: Features{feature=1: map<string, Feature>}}, Feature{bytes_list=1 |
# float_list=2 | int64_list=3}, each list {value=1} (floats and ints packed).
_FIELD = {"bytes_list": 1, "float_list": 2, "int64_list": 3}


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str | None, values: list[Any]) -> bytes:
    if kind is None:
        return b""  # an empty list: a Feature with no kind
    if kind == "bytes_list":
        inner = b"".join(_field(1, v) for v in values)
    elif kind == "float_list":
        with np.errstate(over="ignore"):  # beyond float32: inf, as protobuf stores it
            inner = _field(1, np.asarray(values, dtype="<f4").tobytes())
    else:
        inner = _field(1, b"".join(_varint(v) for v in values))
    return _field(_FIELD[kind], inner)


def serialize_example(features: Features) -> bytes:
    """The serialized tf.train.Example of ``features``."""
    entries = b"".join(
        _field(1, _field(1, name.encode()) + _field(2, _feature(kind, values)))
        for name, (kind, values) in features.items()
    )
    return _field(1, entries) if entries else b""


def examples_from_json(body: dict[str, Any], method: str) -> list[bytes]:
    """The serialized examples of a classify/regress request body (context merged in: the
    example's own value of a feature wins)."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    context = features_from_json(body["context"]) if "context" in body else {}
    examples = body.get("examples")
    if examples is None:
        raise BadRequest(f"When method is {method}, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise BadRequest("Expecting 'examples' value to be an list/array")
    if not examples:
        raise BadRequest("'examples' value is an empty array")
    return [serialize_example({**context, **features_from_json(v)}) for v in examples]


def decode_examples(raw: bytes, method: str) -> tuple[str | None, list[bytes]]:
    """In the codec process: (signature name, serialized examples) of a large body."""
    from .protocol import parse_json

    body = parse_json(raw)
    name = body.get("signature_name") if isinstance(body, dict) else None
    return name, examples_from_json(body, method)


def _checked(version: ModelVersion, name: str | None, method: str, kind: str) -> Signature:
    signature = version.signature(name)
    if signature.method_name != method:
        raise BadRequest(
            f"Expected {kind} signature method_name to be {method}. Was: "
            f'{signature.method_name} (name the signature with "signature_name")'
        )
    if list(signature.inputs) != ["inputs"]:
        raise BadRequest(
            f"Signature '{signature.name}' has inputs {sorted(signature.inputs)}; a {kind} "
            "signature takes one input named 'inputs' (the serialized tf.Examples)"
        )
    return signature


def _run(signature: Signature, serialized: list[bytes]) -> dict[str, np.ndarray]:
    return signature.call({"inputs": np.array(serialized, dtype=object)})


def classify(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    """``{"results": [[[label, score], ...], ...]}``, one list per example."""
    serialized = examples_from_json(body, "classify")
    return classify_examples(version, body.get("signature_name"), serialized)


def classify_examples(
    version: ModelVersion, name: str | None, serialized: list[bytes]
) -> dict[str, Any]:
    """classify() of examples already serialized (a large body, decoded in the codec)."""
    signature = _checked(version, name, CLASSIFY_METHOD, "classification")
    if not {"classes", "scores"} & set(signature.outputs):
        raise BadRequest(
            'Expected classification signature outputs to contain at least one of "classes" '
            f'or "scores"; signature {signature.name} has {sorted(signature.outputs)}'
        )
    outputs = _run(signature, serialized)
    classes, scores = outputs.get("classes"), outputs.get("scores")
    n = len(serialized)
    for name, tensor in (("classes", classes), ("scores", scores)):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise BadRequest(
                f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
            )
        if tensor.shape[0] != n:
            raise BadRequest(f"Expected {name} output batch size of {n}. Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise BadRequest(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    width = (classes if classes is not None else scores).shape[1]
    results = []
    for i in range(n):
        row = []
        for j in range(width):
            label = classes[i][j] if classes is not None else b""
            label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            score = (
                decimal(float(np.float32(scores[i][j])), np.float32) if scores is not None else 0
            )
            row.append([label, score])
        results.append(row)
    return {"results": results}


def regress(version: ModelVersion, body: dict[str, Any]) -> dict[str, Any]:
    """``{"results": [value, ...]}``, one value per example."""
    serialized = examples_from_json(body, "regress")
    return regress_examples(version, body.get("signature_name"), serialized)


def regress_examples(
    version: ModelVersion, name: str | None, serialized: list[bytes]
) -> dict[str, Any]:
    """regress() of examples already serialized (a large body, decoded in the codec)."""
    signature = _checked(version, name, REGRESS_METHOD, "regression")
    if list(signature.outputs) != ["outputs"]:
        raise BadRequest(
            f"Signature '{signature.name}' has outputs {sorted(signature.outputs)}; a "
            "regression signature has one output named 'outputs'"
        )
    values = _run(signature, serialized)["outputs"]
    n = len(serialized)
    if not (values.shape == (n,) or values.shape == (n, 1)):
        raise BadRequest(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(values.shape)}"
        )
    return {"results": [decimal(float(np.float32(v)), np.float32) for v in values.reshape(-1)]}
