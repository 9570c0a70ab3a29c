"""A client no one here wrote: TensorFlow Serving's own API messages (tensorflow-serving-api)
read our endpoint's answers strictly, and a generic client built from them gets predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
from google.protobuf import json_format

from tests import protos
from tests.models import keras_model, multi_io_model, start_serving


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients")
    keras_model(root / "scorer", 1, bias=1.0)
    multi_io_model(root / "multi")
    running = [start_serving(n, root / n) for n in ("scorer", "multi")]
    yield {
        n: url + f"/v1/models/{n}" for n, (_, url) in zip(("scorer", "multi"), running, strict=True)
    }
    for proc, _ in running:
        proc.terminate()
        proc.wait(timeout=30)


def test_status_is_a_get_model_status_response(served):
    text = requests.get(served["scorer"], timeout=10).text
    status = json_format.Parse(text, protos.get_model_status_pb2.GetModelStatusResponse())
    (version,) = status.model_version_status
    assert version.version == 1
    assert version.state == protos.get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0


def signature(url: str) -> tuple[protos.model_pb2.ModelSpec, protos.meta_graph_pb2.SignatureDef]:
    """What a generic client does: read the metadata into TF Serving's own messages."""
    meta = requests.get(url + "/metadata", timeout=10).json()
    spec = json_format.ParseDict(meta["model_spec"], protos.model_pb2.ModelSpec())
    signatures = json_format.ParseDict(
        meta["metadata"]["signature_def"], protos.get_model_metadata_pb2.SignatureDefMap()
    )
    return spec, signatures.signature_def["serving_default"]


def test_a_generic_client_built_from_the_metadata(served):
    spec, sig = signature(served["scorer"])
    assert spec.name == "scorer" and spec.version.value == 1
    ((name, tensor),) = sig.inputs.items()
    assert tensor.dtype == protos.types_pb2.DT_FLOAT
    width = tensor.tensor_shape.dim[1].size
    rows = np.arange(3 * width, dtype=np.float32).reshape(3, width)
    body = {"signature_name": "serving_default", "inputs": {name: rows.tolist()}}
    r = requests.post(served["scorer"] + ":predict", json=body, timeout=10)
    assert r.status_code == 200
    assert np.allclose(np.asarray(r.json()["outputs"]).reshape(-1), rows.sum(axis=1) + 1.0)


def test_several_typed_inputs_from_the_metadata(served):
    _, sig = signature(served["multi"])
    dtypes = {k: v.dtype for k, v in sig.inputs.items()}
    assert dtypes == {"text": protos.types_pb2.DT_STRING, "scale": protos.types_pb2.DT_FLOAT}
    assert set(sig.outputs) == {"length", "scaled"}
    body = {"instances": [{"text": "abc", "scale": 1.5}, {"text": "hello", "scale": 2.0}]}
    r = requests.post(served["multi"] + ":predict", json=body, timeout=10)
    assert r.json() == {"predictions": [{"length": 3, "scaled": 3.0}, {"length": 5, "scaled": 4.0}]}
