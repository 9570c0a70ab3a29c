"""Client values -> input arrays, as TF Serving reads them, without TensorFlow: the same code
runs in the endpoint process and in its codec process (codec.py), which decodes large bodies
away from the endpoint's event loop."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BadRequest


@dataclass(frozen=True)
class InputSpec:
    """What converting a value for one input needs (picklable: no TensorFlow objects)."""

    name: str
    string: bool  # tf.string: bytes, {"b64": ...} decoded
    boolean: bool  # tf.bool: only JSON true/false
    dtype: Any  # numpy dtype of the input; None for types JSON cannot carry
    shape: tuple[int | None, ...] | None  # None: unknown rank
    type_word: str  # TensorFlow's name of the type: float, int64, string...

    def compatible(self, shape: tuple[int, ...]) -> bool:
        """tf.TensorShape.is_compatible_with for a concrete shape."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True)
        )


def to_array(spec: InputSpec, value: Any, check_shapes: bool) -> np.ndarray:
    """A client value as an array of the input's dtype (and shape, with ``check_shapes``),
    or BadRequest in TF Serving's words."""
    name = spec.name
    if spec.string:
        check_rectangular(name, value)  # numpy would make an array of lists
        array = np.asarray(decode_b64(value), dtype=object)
        array = np.vectorize(as_bytes, otypes=[object])(array) if array.size else array
    else:
        try:
            raw = np.asarray(value)
        except ValueError:  # ragged lists: say where, as TF Serving does
            check_rectangular(name, value)
            raise BadRequest(f"Input '{name}' is not a rectangular tensor") from None
        if raw.dtype.kind not in "biuf" or (raw.dtype.kind == "b") != spec.boolean:
            sample = raw.reshape(-1)[:1].tolist()
            raise BadRequest(
                f"Input '{name}': JSON value {sample[0] if sample else value!r:.40} is not "
                f"of expected type: {spec.type_word}"
            )
        if spec.dtype is None:
            raise BadRequest(f"Input '{name}' of type {spec.type_word} cannot be sent as JSON")
        try:
            array = raw.astype(spec.dtype)
        except (ValueError, TypeError, OverflowError) as e:
            raise BadRequest(
                f"Input '{name}' is not of expected type: {spec.type_word}: {e}"
            ) from None
    if check_shapes and not spec.compatible(array.shape):
        assert spec.shape is not None
        raise BadRequest(
            f"Input '{name}' has shape {list(array.shape)} but the model expects "
            f"{[-1 if d is None else d for d in spec.shape]}"
        )
    return array


def prepare(
    signature: str, specs: dict[str, InputSpec], inputs: dict[str, Any], check_shapes: bool
) -> dict[str, np.ndarray]:
    """Check names, dtypes and shapes of a request's inputs; its arrays, or BadRequest."""
    missing = sorted(set(specs) - set(inputs))
    extra = sorted(set(inputs) - set(specs))
    if missing or extra:
        raise BadRequest(
            f"Signature '{signature}' takes inputs {sorted(specs)}; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unknown {extra}" if extra else "")
        )
    return {k: to_array(specs[k], v, check_shapes) for k, v in inputs.items()}


def check_rectangular(name: str, value: Any) -> None:
    """BadRequest with TF Serving's words when nested lists are ragged: "Expecting shape"
    (a different depth) or "Expecting tensor size" (a different length)."""

    def dims(item: Any) -> list[int]:
        found = []
        while isinstance(item, list):
            found.append(len(item))
            item = item[0] if item else None
        return found

    shape = dims(value)

    def walk(item: Any, depth: int, path: str) -> None:
        if len(dims(item)) != len(shape) - depth:  # nested deeper or shallower
            raise BadRequest(
                f"Input '{name}': Expecting shape {shape[depth:]} but {path or 'the value'} "
                f"has shape {dims(item)}"
            )
        if depth == len(shape):
            return
        if len(item) != shape[depth]:
            raise BadRequest(
                f"Input '{name}': Expecting tensor size {shape[depth]} but got {len(item)} "
                f"at {path or 'the top level'}"
            )
        for i, sub in enumerate(item):
            walk(sub, depth + 1, f"{path}[{i}]")

    walk(value, 0, "")


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def decode_b64(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise BadRequest('Binary values are written {"b64": "<base64>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError):
            raise BadRequest('Invalid base64 in a {"b64": ...} value') from None
    if isinstance(value, list):
        return [decode_b64(v) for v in value]
    return value
