"""The Open Inference Protocol (KServe v2 REST) on our model server, checked with Triton's own
HTTP client (tritonclient[http], installed by the test set-up in .venvs/triton: its pins
clash with TensorFlow's) on TF Serving's half_plus_two test model."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.integration.test_tfserving_parity import MODELS, start

ROOT = Path(__file__).resolve().parents[2]
TRITON = ROOT / ".venvs" / "triton" / "bin" / "python"
CLIENT = ROOT / "tests" / "clients" / "triton_client.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = start(
        tmp_path_factory.mktemp("oip"),
        "--model_name=default",
        f"--model_base_path={MODELS / 'saved_model_half_plus_two_cpu'}",
    )
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def example(x: float) -> str:
    """A serialized tf.Example {"x": [x]}, base64 for the client's command line."""
    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example()
    ex.features.feature["x"].float_list.value.append(x)
    return base64.b64encode(ex.SerializeToString()).decode()


def test_tritons_client_sees_a_kserve_v2_server(server):
    assert TRITON.exists(), "run `make setup-test`: it installs Triton's client in .venvs/triton"
    address = server.removeprefix("http://")
    out = subprocess.run(
        [str(TRITON), str(CLIENT), address, "default", example(10.0)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout)
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["metadata"] == {
        "name": "default",
        "versions": ["123"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
    }
    expected = [[2.5], [3.0], [4.5]]  # y = x / 2 + 2
    assert seen["y_binary_True"] == expected and seen["y_binary_False"] == expected
    assert seen["y_version"] == expected
    json_answer = seen["response_binary_False"]
    assert json_answer["id"] == "req-1" and json_answer["model_version"] == "123"
    assert json_answer["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [3, 1], "data": [2.5, 3.0, 4.5]}
    ]
    assert seen["scores"] == [[7.0], [7.0]]  # classify_x_to_y on two tf.Examples x=10
    unknown, wrong = seen["errors"]["unknown model"], seen["errors"]["wrong datatype"]
    assert unknown[0] == "400" or unknown[0] == "404", unknown
    assert "Servable not found" in unknown[1]
    assert wrong[0] == "400" and "Input x is FP32, not INT64" in wrong[1]


BAD = [
    ({"inputs": []}, '"inputs" must be a non-empty list'),
    (
        {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]},
        "1 values do not fill shape [2]",
    ),
    (
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]},
        "datatype 'FP99' is not one of",
    ),
    (
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]},
        "data is not FP32",
    ),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, 'give "data"'),
    (
        {
            "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}],
            "outputs": [{"name": "z"}],
        },
        "No output z",
    ),
    (
        {"inputs": [{"name": "q", "shape": [1, 1], "datatype": "FP32", "data": [1]}]},
        "missing ['x']",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_infer_requests_say_what_to_fix(server, body, message):
    r = requests.post(server + "/v2/models/default/infer", json=body, timeout=30)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_binary_data_that_does_not_add_up_is_refused(server):
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    url = server + "/v2/models/default/infer"
    short = head + np.ones(1, dtype=np.float32).tobytes()
    r = requests.post(url, data=short, headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "exceeds the data sent" in r.json()["error"]
    r = requests.post(url, data=head, headers={"Inference-Header-Content-Length": "99999"})
    assert r.status_code == 400 and "does not fit a body" in r.json()["error"]
    r = requests.get(server + "/v2/models/nope/ready", timeout=10)
    assert r.status_code == 404 and "Servable not found" in r.json()["error"]
