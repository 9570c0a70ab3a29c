"""TF Serving's own expectations, replayed against our model server on TF Serving's test models.

The server is started the way TF Serving is (its flags, a model config file with a version
policy and labels, batching parameters, monitoring config) and serves the SavedModels from
TF Serving's repository (../shared/fixtures/tfserving). Each case cites the TF Serving source
it ports, at commit 9d981c5c of github.com/tensorflow/serving:

  H  tensorflow_serving/model_servers/http_rest_api_handler_test.cc
  S  tensorflow_serving/model_servers/tensorflow_model_server_test.py
  A  tensorflow_serving/g3doc/api_rest.md
  J  tensorflow_serving/util/json_tensor_test.cc (via util/json_tensor.cc)
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from hubforge.processes import free_port
from tests.models import model_server

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT.parent / "shared" / "fixtures" / "tfserving"
SCRIPT = Path(sys.executable).parent / "hubforge-model-server"
TWO = "saved_model_half_plus_two_2_versions"  # H's kTestModelName, version 123, "Version_Label"

MODEL_CONFIG = f"""
model_config_list {{
  config {{
    name: "{TWO}"
    base_path: "{MODELS / TWO}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 123 }} }}
    version_labels {{ key: "Version_Label" value: 123 }}
  }}
  config {{
    name: "default"
    base_path: "{MODELS / "saved_model_half_plus_two_cpu"}"
  }}
  config {{
    name: "saved_model_half_plus_three"
    base_path: "{MODELS / "saved_model_half_plus_three"}"
  }}
  config {{
    name: "two_latest"
    base_path: "{MODELS / TWO}"
    model_version_policy {{ latest {{ num_versions: 2 }} }}
  }}
  config {{
    name: "matrix_half_plus_two"
    base_path: "{MODELS / "matrix_half_plus_two"}"
    model_version_policy {{ all {{}} }}
  }}
}}
"""


def start(tmp: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """``hubforge-model-server`` with TF Serving's flags on a free port."""
    port = free_port()
    command = [str(SCRIPT), f"--rest_api_port={port}", *flags]
    return model_server(command, port, tmp / f"server-{port}.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assert MODELS.is_dir(), f"{MODELS} is missing (../shared/fixtures)"
    tmp = tmp_path_factory.mktemp("tfserving")
    (tmp / "models.config").write_text(MODEL_CONFIG)
    (tmp / "monitoring.config").write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
    )
    (tmp / "batching.config").write_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
        "num_batch_threads { value: 2 }\n"
    )
    proc, url = start(
        tmp,
        "--port=8500",  # TF Serving's gRPC port: accepted
        f"--model_config_file={tmp / 'models.config'}",
        f"--monitoring_config_file={tmp / 'monitoring.config'}",
        "--enable_batching=true",
        f"--batching_parameters_file={tmp / 'batching.config'}",
        "--file_system_poll_wait_seconds=1",
    )
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def call(url: str, method: str, path: str, body: str | dict | None = None):
    data = json.dumps(body) if isinstance(body, dict) else body
    r = requests.request(method, url + path, data=data, timeout=30)
    assert r.headers["Content-Type"].startswith("application/json"), r.text[:200]
    return r.status_code, r.json()


# -- predict -------------------------------------------------------------------------------

PREDICT = [
    # H:335-340 latest version, rows of two values into a [-1, 1] input
    (
        f"/v1/models/{TWO}:predict",
        {"instances": [[1.0, 2.0], [3.0, 4.0]]},
        {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
    ),
    # H:345-350 a specific version
    (
        f"/v1/models/{TWO}/versions/123:predict",
        {"instances": [1.0, 2.0]},
        {"predictions": [2.5, 3.0]},
    ),
    # H:355-360 a version label
    (
        f"/v1/models/{TWO}/labels/Version_Label:predict",
        {"instances": [1.0, 2.0]},
        {"predictions": [2.5, 3.0]},
    ),
    # H:365-371 an explicit signature_name
    (
        f"/v1/models/{TWO}/versions/123:predict",
        {"signature_name": "serving_default", "instances": [3.0, 4.0]},
        {"predictions": [3.5, 4.0]},
    ),
    # H:376-382 columnar inputs
    (
        f"/v1/models/{TWO}/versions/123:predict",
        {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
        {"outputs": [3.5, 4.0]},
    ),
    # S:479-498 testPredictREST on the TF1 model named "default"
    (
        "/v1/models/default:predict",
        {"instances": [2.0, 3.0, 4.0]},
        {"predictions": [3.0, 3.5, 4.0]},
    ),
    # S:500-519 testPredictColumnarREST
    ("/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}, {"outputs": [3.0, 3.5, 4.0]}),
    # A:470-474 the walk-through model, whose regress signature tf.saved_model.load refuses
    (
        "/v1/models/saved_model_half_plus_three:predict",
        {"instances": [1.0, 2.0, 5.0]},
        {"predictions": [3.5, 4.0, 5.5]},
    ),
    # A (Request format): unknown top-level keys are ignored, as json_tensor.cc reads only
    # the keys it knows
    ("/v1/models/default:predict", {"instances": [1.0], "client_id": "x"}, {"predictions": [2.5]}),
    # the batching test model (batching/testdata/matrix_half_plus_two), batching on
    (
        "/v1/models/matrix_half_plus_two:predict",
        {"instances": [[[1.0, 2.0], [3.0, 4.0]]]},
        {"predictions": [[[2.5, 3.0], [3.5, 4.0]]]},
    ),
]


@pytest.mark.parametrize(("path", "body", "expected"), PREDICT)
def test_predict_answers_as_tf_serving(server, path, body, expected):
    status, answer = call(server, "POST", path, body)
    assert (status, answer) == (200, expected)


# -- classify and regress ------------------------------------------------------------------

CLASSIFY_REGRESS = [
    # H:392-396 regress, latest version
    (
        f"/v1/models/{TWO}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        {"results": [42]},
    ),
    # H:401-407 a specific version
    (
        f"/v1/models/{TWO}/versions/123:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        {"results": [42]},
    ),
    # H:412-418 a version label
    (
        f"/v1/models/{TWO}/labels/Version_Label:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        {"results": [42]},
    ),
    # H:428-432 classify, latest version
    (
        f"/v1/models/{TWO}:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
        {"results": [[["", 12]]]},
    ),
    # H:437-443 classify through a version label
    (
        f"/v1/models/{TWO}/labels/Version_Label:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]},
        {"results": [[["", 7]]]},
    ),
    # S:439-457 testClassifyREST
    (
        "/v1/models/default:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
        {"results": [[["", 3.0]]]},
    ),
    # S:459-477 testRegressREST
    (
        "/v1/models/default:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
        {"results": [3.0]},
    ),
    # A:479-485 the walk-through's regress call, on a non-default signature
    (
        "/v1/models/saved_model_half_plus_three:regress",
        {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]},
        {"results": [3.5, 4.0]},
    ),
    # A (Classify and Regress API, "context"): common features merged into every example
    (
        "/v1/models/default:regress",
        {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{}, {}]},
        {"results": [4.0, 4.0]},
    ),
    # ... and an example's own value wins over the context's (proto merge)
    (
        "/v1/models/default:regress",
        {"signature_name": "regress_x_to_y", "context": {"x": 4.0}, "examples": [{"x": 6.0}]},
        {"results": [5.0]},
    ),
]


@pytest.mark.parametrize(("path", "body", "expected"), CLASSIFY_REGRESS)
def test_classify_and_regress_answer_as_tf_serving(server, path, body, expected):
    status, answer = call(server, "POST", path, body)
    assert (status, answer) == (200, expected)


# -- status and metadata -------------------------------------------------------------------

AVAILABLE = {
    "model_version_status": [
        {
            "version": "123",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]
}


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/{TWO}",  # H:454-472: the specific policy serves only 123 of 123 and 124
        f"/v1/models/{TWO}/versions/123",  # H:475-492
        f"/v1/models/{TWO}/labels/Version_Label",  # H:495-512
        "/v1/models/saved_model_half_plus_three",  # A:452-463
    ],
)
def test_status_answers_as_tf_serving(server, path):
    assert call(server, "GET", path) == (200, AVAILABLE)


def test_metadata_equals_tf_servings_reference_files(server):
    # H:515-531: the response equals saved_model_half_plus_two_2_versions_metadata.json
    expected = json.loads((MODELS / f"{TWO}_metadata.json").read_text())
    assert call(server, "GET", f"/v1/models/{TWO}/metadata") == (200, expected)
    # S:550-580 testGetModelMetadataREST: half_plus_two_model_metadata.json for "default"
    expected = json.loads((MODELS / "half_plus_two_model_metadata.json").read_text())
    assert call(server, "GET", "/v1/models/default/metadata") == (200, expected)


def test_version_policies_and_a_model_config_with_several_models(server):
    status, body = call(server, "GET", "/v1/models/matrix_half_plus_two")
    assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["1"]
    health = requests.get(server + "/healthz", timeout=10).json()
    assert health["models"] == {
        TWO: [123],
        "default": [123],
        "saved_model_half_plus_three": [123],
        "matrix_half_plus_two": [1],
        "two_latest": [123, 124],
    }
    status, body = call(server, "GET", "/v1/models/two_latest")
    assert [s["version"] for s in body["model_version_status"]] == ["124", "123"]
    status, body = call(
        server, "POST", "/v1/models/two_latest/versions/123:predict", {"instances": [1.0]}
    )
    assert (status, body) == (200, {"predictions": [2.5]})


# -- errors --------------------------------------------------------------------------------

ERRORS = [
    # H:265-268 an unknown model; A:491-497
    ("POST", "/v1/models/foo:predict", {"instances": [1]}, 404, "Servable not found"),
    # H:271-275
    ("POST", "/v1/models/foo/versions/50:predict", {"instances": [1]}, 404, "Servable not found"),
    # H:277-281 a name with the version glued on
    ("POST", f"/v1/models/{TWO}99:predict", {"instances": [1]}, 404, "Servable not found"),
    # H:92 the specific policy serves 123 only: 124 is on disk but not served
    (
        "POST",
        f"/v1/models/{TWO}/versions/124:predict",
        {"instances": [1.0]},
        404,
        "Servable not found",
    ),
    # H:291-295 an empty document
    ("POST", "/v1/models/default:predict", "", 400, "JSON Parse error: The document is empty"),
    # H:298-301 badly formatted JSON
    (
        "POST",
        "/v1/models/default:predict",
        "instances = [1, 2]",
        400,
        "JSON Parse error: Invalid value",
    ),
    # H:304-308 strings for a float input
    (
        "POST",
        "/v1/models/default:predict",
        {"instances": ["x", "y"]},
        400,
        "not of expected type: float",
    ),
    # H:311-319 an unknown version label: 400, not 404
    (
        "POST",
        f"/v1/models/{TWO}/labels/Version_Nonexistent:predict",
        {"instances": ["x", "y"]},
        400,
        "Unrecognized servable version label",
    ),
    # H:323-327 signature_name that is not a string
    (
        "POST",
        "/v1/models/default:predict",
        {"signature_name": 100},
        400,
        "'signature_name' key must be a string value.",
    ),
    # json_tensor.cc FillPredictRequestFromJson
    (
        "POST",
        "/v1/models/default:predict",
        {"signature_name": "serving_default"},
        400,
        "Missing 'inputs' or 'instances' key",
    ),
    # json_tensor.cc FillClassifyRegressRequestFromJson
    (
        "POST",
        "/v1/models/default:regress",
        {"signature_name": "regress_x_to_y"},
        400,
        "key 'examples' is expected and was not found",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        {"examples": {"x": 1.0}},
        400,
        "Expecting 'examples' value to be an list/array",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        {"examples": []},
        400,
        "'examples' value is an empty array",
    ),
    # json_tensor.cc AddValueToFeature: a feature's values share one kind; no nested lists,
    # no null, no uint64
    (
        "POST",
        "/v1/models/default:regress",
        {"examples": [{"x": [1.0, "a"]}]},
        400,
        "Unexpected element type in feature: x expecting type: float",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        {"examples": [{"x": [[1.0]]}]},
        400,
        "unexpected JSON type",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        {"examples": [{"x": None}]},
        400,
        "unexpected JSON type",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        {"examples": [{"x": 2**64 - 1}]},
        400,
        "Only int64_t is supported",
    ),
    ("POST", "/v1/models/default:regress", {"examples": [7]}, 400, "Example must be JSON object"),
    # classifier.cc:159-167 / regressor.cc: the signature must exist and have the method
    (
        "POST",
        "/v1/models/default:classify",
        {"signature_name": "nope", "examples": [{}]},
        400,
        "No signature was found with the name: nope",
    ),
    (
        "POST",
        "/v1/models/default:classify",
        {"examples": [{"x": 1.0}]},
        400,
        "Expected classification signature method_name to be tensorflow/serving/classify",
    ),
    (
        "POST",
        "/v1/models/default:regress",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]},
        400,
        "Expected regression signature method_name to be tensorflow/serving/regress",
    ),
    # H:207-210 UnsupportedApiCalls: GET with a verb is malformed
    ("GET", "/v1/models/default:predict", None, 400, "Malformed request"),
    ("GET", "/v1/models/default:classify", None, 400, "Malformed request"),
    # nesting deeper than any tensor is the client's mistake, never a 500
    (
        "POST",
        "/v1/models/default:predict",
        '{"instances": ' + "[" * 5000 + "]" * 5000 + "}",
        400,
        "JSON Parse error",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), ERRORS)
def test_errors_answer_as_tf_serving(server, method, path, body, status, message):
    code, answer = call(server, method, path, body)
    assert code == status, answer
    assert set(answer) == {"error"} and message in answer["error"], answer


def test_prometheus_metrics_at_the_monitoring_path(server):
    # S:582-602 testPrometheusEndpoint: the monitoring config's path serves Prometheus text
    call(server, "POST", "/v1/models/default:predict", {"instances": [1.0]})
    r = requests.get(server + "/monitoring/prometheus/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in r.text


def test_bad_flags_and_config_files_are_refused_with_what_to_do(tmp_path):
    def run(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), *flags],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )

    r = run("--rest_api_port=1")
    assert r.returncode == 2 and "--model_base_path (one model) or --model_config_file" in r.stderr
    (tmp_path / "bad.config").write_text("model_config_list { config { nam: 'x' } }")
    r = run(f"--model_config_file={tmp_path / 'bad.config'}")
    assert r.returncode == 2 and "bad.config: 1:" in r.stderr and "nam" in r.stderr
    (tmp_path / "batch.config").write_text("max_batch_size { value: 0 }")
    r = run(
        f"--model_base_path={tmp_path}",
        "--enable_batching",
        f"--batching_parameters_file={tmp_path / 'batch.config'}",
    )
    assert r.returncode == 2 and "max_batch_size must be >= 1" in r.stderr
    r = run(f"--model_base_path={tmp_path}", "--no_such_flag=1")
    assert r.returncode == 2 and "unrecognized arguments: --no_such_flag=1" in r.stderr


# -- fuzz: whatever a careless client sends, the answer is a 4xx with an error, never a 500 --

FUZZED = (
    "/v1/models/default:predict",
    "/v1/models/default:classify",
    "/v1/models/default:regress",
    "/v2/models/default/infer",
)


@functools.cache
def fuzz_bodies() -> dict:
    """Each FUZZED route's bodies (Hypothesis strategies): built on first use, so that
    collecting the suite does not import Hypothesis in every test process (~1 CPU-s each)."""
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=6)
        | st.builds(lambda s: {"b64": s}, st.text(max_size=8)),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=10,
    )
    tensor_items = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["x", "y", "inputs", ""]),
            "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP99"]),
            "shape": st.lists(st.integers(min_value=-1, max_value=3), max_size=3),
            "data": json_values,
        },
        optional={
            "parameters": st.dictionaries(
                st.sampled_from(["binary_data_size", "binary_data", "signature_name"]), json_values
            )
        },
    )
    return {
        "/v1/models/default:predict": st.fixed_dictionaries(
            {},
            optional={
                "instances": json_values,
                "inputs": json_values,
                "signature_name": json_values,
            },
        ),
        "/v1/models/default:classify": st.fixed_dictionaries(
            {},
            optional={
                "examples": json_values,
                "context": json_values,
                "signature_name": st.sampled_from(["classify_x_to_y", "serving_default"]),
            },
        ),
        "/v1/models/default:regress": st.fixed_dictionaries(
            {},
            optional={
                "examples": json_values,
                "context": json_values,
                "signature_name": st.sampled_from(["regress_x_to_y", "regress_x2_to_y3"]),
            },
        ),
        "/v2/models/default/infer": st.fixed_dictionaries(
            {},
            optional={
                "inputs": st.lists(tensor_items, max_size=2) | json_values,
                "outputs": json_values,
                "parameters": json_values,
            },
        ),
    }


@pytest.mark.parametrize("path", sorted(FUZZED))
def test_malformed_requests_never_become_a_500(server, path):
    from hypothesis import HealthCheck, given, settings

    bodies = fuzz_bodies()
    assert set(bodies) == set(FUZZED)

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(body=bodies[path])
    def attempt(body):
        r = requests.post(server + path, data=json.dumps(body, allow_nan=True), timeout=30)
        assert r.status_code < 500, (body, r.text[:300])
        if r.status_code >= 400:
            assert set(r.json()) == {"error"}, r.text[:300]

    attempt()
