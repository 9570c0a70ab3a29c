"""The Open Inference Protocol (KServe v2 REST) beside TF Serving's API, on the same models.

    GET  /v2                                         server metadata
    GET  /v2/health/live, /v2/health/ready           liveness, readiness
    GET  /v2/models/{name}[/versions/{v}]            model metadata (typed tensors)
    GET  /v2/models/{name}[/versions/{v}]/ready      model readiness
    POST /v2/models/{name}[/versions/{v}]/infer      inference with typed tensors

A model's inputs and outputs are those of its default signature (``serving_default``; another
with ``"parameters": {"signature_name": ...}``). Tensor data is JSON (flat row-major or nested)
or, as Triton's clients send it by default, the binary tensor extension: a JSON header of
``Inference-Header-Content-Length`` bytes followed by each tensor's raw bytes.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import numpy as np

from .errors import BadRequest
from .model import ModelVersion, Signature

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES = {  # TensorFlow's DataType name -> the protocol's datatype
    "DT_BOOL": "BOOL",
    "DT_UINT8": "UINT8",
    "DT_UINT16": "UINT16",
    "DT_UINT32": "UINT32",
    "DT_UINT64": "UINT64",
    "DT_INT8": "INT8",
    "DT_INT16": "INT16",
    "DT_INT32": "INT32",
    "DT_INT64": "INT64",
    "DT_HALF": "FP16",
    "DT_FLOAT": "FP32",
    "DT_DOUBLE": "FP64",
    "DT_STRING": "BYTES",
}
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def datatype(spec: Any) -> str:
    from tensorflow.core.framework import types_pb2

    name = types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
    if name not in DATATYPES:
        raise BadRequest(f"Tensor {spec.key} has type {name}, which the protocol cannot carry")
    return DATATYPES[name]


def _shape(spec: Any) -> list[int]:
    if spec.shape.rank is None:
        return [-1]
    return [-1 if d is None else int(d) for d in spec.shape]


def _tensors(specs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "datatype": datatype(s), "shape": _shape(s)} for k, s in specs.items()]


def model_metadata(name: str, versions: list[int], model: ModelVersion) -> dict[str, Any]:
    signature = model.signature(None)
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "tensorflow_savedmodel",
        "inputs": _tensors(signature.inputs),
        "outputs": _tensors(signature.outputs),
    }


def split_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(JSON request, binary tail) of an infer request."""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise BadRequest(f"{HEADER_LENGTH} must be a number of bytes") from None
        if not 0 < size <= len(raw):
            raise BadRequest(f"{HEADER_LENGTH} {size} does not fit a body of {len(raw)} bytes")
        head, tail = raw[:size], raw[size:]
    else:
        head, tail = raw, b""
    try:
        request = json.loads(head or b"")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadRequest(f"The request is not JSON: {e}") from None
    if not isinstance(request, dict):
        raise BadRequest('The request is a JSON object with "inputs": [...]')
    return request, tail


def _bytes_elements(blob: bytes) -> list[bytes]:
    """Triton's BYTES tensor in binary: each element a 4-byte little-endian length + bytes."""
    items, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise BadRequest("A BYTES tensor's binary data ends inside an element's length")
        (size,) = struct.unpack_from("<I", blob, at)
        if at + 4 + size > len(blob):
            raise BadRequest("A BYTES tensor's binary data ends inside an element")
        items.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    return items


def _input_array(item: Any, tail: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise BadRequest('Each input is an object with "name", "shape", "datatype" and "data"')
    name, kind, shape = item["name"], item.get("datatype"), item.get("shape")
    if kind not in (*NUMPY, "BYTES"):
        raise BadRequest(
            f"Input {name}: datatype {kind!r} is not one of {sorted([*NUMPY, 'BYTES'])}"
        )
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"Input {name}: shape must be a list of non-negative integers")
    size = _parameters(item, f"input {name}").get("binary_data_size")
    count = int(np.prod(shape)) if shape else 1
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(tail):
            raise BadRequest(f"Input {name}: binary_data_size {size!r} exceeds the data sent")
        blob = tail[offset : offset + size]
        offset += size
        if kind == "BYTES":
            values = np.array(_bytes_elements(blob), dtype=object)
        else:
            width = np.dtype(NUMPY[kind]).itemsize
            if len(blob) != count * width:
                raise BadRequest(
                    f"Input {name}: {len(blob)} bytes of binary data, but shape {shape} of "
                    f"{kind} needs {count * width}"
                )
            values = np.frombuffer(blob, dtype=NUMPY[kind])
    else:
        if "data" not in item:
            raise BadRequest(f'Input {name}: give "data" (or binary data with binary_data_size)')
        try:
            if kind == "BYTES":
                values = np.array(item["data"], dtype=object).reshape(-1)
                values = np.array([_as_bytes(v) for v in values], dtype=object)
            else:
                values = np.asarray(item["data"])
                if values.dtype.kind not in "biuf":
                    raise ValueError(f"values of {kind} must be numbers")
                values = values.astype(NUMPY[kind]).reshape(-1)
        except (ValueError, TypeError, OverflowError) as e:
            raise BadRequest(f"Input {name}: data is not {kind}: {e}") from None
    if values.size != count:
        raise BadRequest(f"Input {name}: {values.size} values do not fill shape {shape}")
    return name, values.reshape(shape), offset


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The protocol's optional ``"parameters"`` object of a request, input or output."""
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest(f'"parameters" of {where} must be an object, got {parameters!r:.40}')
    return parameters


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    raise ValueError("BYTES data are strings")


def _signature(model: ModelVersion, request: dict[str, Any]) -> Signature:
    name = _parameters(request, "the request").get("signature_name")
    if name is not None and not isinstance(name, str):
        raise BadRequest('"parameters": {"signature_name": ...} must be a string')
    return model.signature(name)


def infer(
    model_name: str, model: ModelVersion, request: dict[str, Any], tail: bytes
) -> tuple[dict[str, Any], bytes]:
    """Run one infer request; (JSON response, binary tail)."""
    signature = _signature(model, request)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest('"inputs" must be a non-empty list of tensors')
    arrays, offset = {}, 0
    for item in inputs:
        name, values, offset = _input_array(item, tail, offset)
        if name in arrays:
            raise BadRequest(f"Input {name} is given twice")
        if name in signature.inputs and datatype(signature.inputs[name]) != item["datatype"]:
            raise BadRequest(
                f"Input {name} is {datatype(signature.inputs[name])}, not {item['datatype']}"
            )
        arrays[name] = values
    outputs = signature.call(signature.prepare(arrays))
    wanted = request.get("outputs")
    binary_default = bool(_parameters(request, "the request").get("binary_data_output"))
    if wanted is None:
        wanted = [{"name": k} for k in outputs]
    if not isinstance(wanted, list) or not all(
        isinstance(w, dict) and isinstance(w.get("name"), str) for w in wanted
    ):
        raise BadRequest('"outputs" is a list of {"name": ...}')
    response: dict[str, Any] = {
        "model_name": model_name,
        "model_version": str(model.version),
        "outputs": [],
    }
    if isinstance(request.get("id"), str):
        response["id"] = request["id"]
    blobs = []
    for want in wanted:
        name = want["name"]
        if name not in outputs:
            raise BadRequest(f"No output {name}; this model gives {sorted(outputs)}")
        array = np.asarray(outputs[name])
        kind = datatype(signature.outputs[name])
        entry: dict[str, Any] = {"name": name, "datatype": kind, "shape": list(array.shape)}
        binary = _parameters(want, f"output {name}").get("binary_data", binary_default)
        if binary:
            blob = _binary(array, kind)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif kind == "BYTES":
            entry["data"] = [_text(v) for v in array.reshape(-1)]
        else:
            entry["data"] = array.reshape(-1).tolist()
        response["outputs"].append(entry)
    return response, b"".join(blobs)


def _binary(array: np.ndarray, kind: str) -> bytes:
    if kind != "BYTES":
        return np.ascontiguousarray(array, dtype=NUMPY[kind]).tobytes()
    parts = []
    for value in array.reshape(-1):
        data = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class OipMixin:
    """Request handling shared by the v2 handlers (needs ``self.models`` and ``fail``)."""

    def model(self, name: str, version: str | None) -> tuple[Any, ModelVersion]:
        if version is not None and not version.isdigit():
            raise BadRequest(f"Version '{version}' is not a number")
        repo = self.models.get(name, version)  # type: ignore[attr-defined]
        return repo, repo.resolve(int(version) if version else None, None)

    async def run_infer(self, name: str, version: str | None) -> None:
        _, model = self.model(name, version)
        request, tail = split_body(
            self.request.body,
            self.request.headers.get(HEADER_LENGTH),  # type: ignore[attr-defined]
        )
        response, blob = await asyncio.to_thread(infer, name, model, request, tail)
        head = json.dumps(response).encode()
        if blob:
            self.set_header(HEADER_LENGTH, str(len(head)))  # type: ignore[attr-defined]
            self.set_header("Content-Type", "application/octet-stream")  # type: ignore[attr-defined]
        else:
            self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish(head + blob)  # type: ignore[attr-defined]
