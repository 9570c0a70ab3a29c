"""The TensorFlow Serving REST predict protocol: row ("instances") and columnar ("inputs")."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from .errors import BadRequest
from .model import Signature


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as TF Serving reads it (util/json_tensor.cc ParseJson, FillSignature):
    a JSON object whose optional "signature_name" is a string; other keys are ignored."""
    if not raw:
        raise BadRequest("JSON Parse error: The document is empty")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"JSON Parse error: Invalid value ({e})") from None
    except RecursionError:
        raise BadRequest("JSON Parse error: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest(
            'JSON Value is not object: the body must be a JSON object with "instances" or '
            '"inputs" (predict) or "examples" (classify, regress)'
        )
    if "signature_name" in body and not isinstance(body["signature_name"], str):
        raise BadRequest("'signature_name' key must be a string value.")
    return body


def parse_body(raw: bytes) -> dict[str, Any]:
    """A predict request: exactly one of "instances" (rows) or "inputs" (columns)."""
    body = parse_json(raw)
    if "instances" not in body and "inputs" not in body:
        raise BadRequest(
            "Missing 'inputs' or 'instances' key: send \"instances\" (row format) or "
            '"inputs" (columnar)'
        )
    if "instances" in body and "inputs" in body:
        raise BadRequest(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
        )
    return body


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def inputs_of(body: dict[str, Any], signature: Signature) -> tuple[dict[str, Any], bool]:
    """(named inputs, row_format) from a parsed request, read as TF Serving reads it
    (util/json_tensor.cc FillTensorMapFromInstancesList): the first instance decides whether
    instances are objects naming inputs or values/lists for the one input."""
    names = sorted(signature.inputs)
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise BadRequest('"instances" must be a non-empty list')
        if isinstance(rows[0], dict) and not _is_b64(rows[0]):
            if not all(isinstance(r, dict) and not _is_b64(r) for r in rows):
                raise BadRequest(
                    "Expecting object but got list: the first instance names its inputs, so "
                    'every instance must be an object like {"input": value}'
                )
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise BadRequest("Every instance must name the same inputs")
            return {k: [r[k] for r in rows] for k in keys}, True
        if any(isinstance(r, dict) and not _is_b64(r) for r in rows):
            raise BadRequest(
                "Expecting value/list but got object: the first instance is a value, so every "
                "instance must be a value or list (or all objects naming the inputs)"
            )
        if len(names) != 1:
            raise BadRequest(f"With several inputs {names}, each instance is an object naming them")
        return {names[0]: rows}, True
    columns = body["inputs"]
    if (
        isinstance(columns, dict)
        and not _is_b64(columns)
        and (len(names) != 1 or set(columns) == set(names))
    ):
        return columns, False
    if len(names) != 1:
        raise BadRequest(f'With several inputs {names}, "inputs" is an object naming them')
    return {names[0]: columns}, False


BYTES_SUFFIX = "_bytes"  # TF Serving: only outputs named *_bytes are binary ({"b64": ...})


def decimal(value: float, kind: type) -> float:
    """A float as TF Serving writes it (util/json_tensor.cc WriteDecimal): six significant
    digits when they give the same value back, else all of them: float32 2.05 is 2.05, not
    the 2.049999952316284 a double would show."""
    if not np.isfinite(value):
        return float(value)  # json writes NaN, Infinity, -Infinity, as TF Serving does
    short = float(f"{value:g}")
    return short if kind(short) == value else float(f"{value:.9g}")


def _jsonable(array: np.ndarray, name: str = "") -> Any:
    if array.dtype == object or array.dtype.kind in "SU":
        binary = name.endswith(BYTES_SUFFIX)
        flat = [_string(v, binary) for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    if array.dtype in (np.float32, np.float16):
        kind = array.dtype.type
        flat = [decimal(v, kind) for v in array.reshape(-1).tolist()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _string(value: Any, binary: bool) -> Any:
    if isinstance(value, bytes):
        if binary:
            return {"b64": base64.b64encode(value).decode()}
        return value.decode("utf-8", errors="replace")  # TF Serving writes the raw bytes
    return {"b64": base64.b64encode(str(value).encode()).decode()} if binary else str(value)


def format_outputs(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's response JSON (util/json_tensor.cc MakeJsonFromTensors): one output
    unnamed, several as an object; rows ("predictions") or columns ("outputs")."""
    columns = {k: _jsonable(v, k) for k, v in outputs.items()}
    if not row_format:
        if len(columns) == 1:
            return {"outputs": next(iter(columns.values()))}
        return {"outputs": columns}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    n = len(next(iter(outputs.values())))
    return {"predictions": [{k: columns[k][i] for k in columns} for i in range(n)]}
