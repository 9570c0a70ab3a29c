"""The endpoint process speaks TF Serving's REST API: real TensorFlow, real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time

import pytest
import requests

from tests.callers import PACE
from tests.models import keras_model, multi_io_model, start_serving


def start_server(name, base, *extra):
    return start_serving(name, base, "--poll", "0.5", *extra)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    keras_model(root / "scorer", 1, bias=0.0)
    keras_model(root / "scorer", 2, bias=10.0)
    keras_model(root / "spare", 3, bias=100.0)
    multi_io_model(root / "multi")
    (root / "scorer" / "labels.json").write_text(json.dumps({"stable": 1}))
    return root


@pytest.fixture(scope="module")
def scorer(models):
    proc, url = start_server("scorer", models / "scorer")
    yield url + "/v1/models/scorer"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def multi(models):
    proc, url = start_server("multi", models / "multi")
    yield url + "/v1/models/multi"
    proc.terminate()
    proc.wait(timeout=30)


def test_status_and_metadata(scorer):
    status = requests.get(scorer, timeout=10).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    assert {s["state"] for s in status["model_version_status"]} == {"AVAILABLE"}
    assert (
        requests.get(scorer + "/labels/stable", timeout=10).json()["model_version_status"][0][
            "version"
        ]
        == "1"
    )
    meta = requests.get(scorer + "/metadata", timeout=10).json()
    assert meta["model_spec"] == {"name": "scorer", "signature_name": "", "version": "2"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (spec,) = sig["inputs"].values()
    assert spec["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in spec["tensor_shape"]["dim"]] == ["-1", "4"]


def test_row_and_columnar_predict_versions_and_labels(scorer):
    rows = {"instances": [[1, 2, 3, 4], [0, 0, 0, 1]]}
    assert requests.post(scorer + ":predict", json=rows, timeout=10).json() == {
        "predictions": [[20.0], [11.0]]
    }
    columns = {"inputs": [[1, 1, 1, 1]]}
    assert requests.post(scorer + ":predict", json=columns, timeout=10).json() == {
        "outputs": [[14.0]]
    }
    assert requests.post(scorer + "/versions/1:predict", json=rows, timeout=10).json() == {
        "predictions": [[10.0], [1.0]]
    }
    assert requests.post(scorer + "/labels/stable:predict", json=rows, timeout=10).json() == {
        "predictions": [[10.0], [1.0]]
    }


def test_named_inputs_binary_values_and_several_outputs(multi):
    text = base64.b64encode(b"hello").decode()
    body = {
        "instances": [
            {"text": {"b64": text}, "scale": 1.5},
            {"text": {"b64": base64.b64encode(b"hi").decode()}, "scale": 2},
        ]
    }
    r = requests.post(multi + ":predict", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [{"length": 5, "scaled": 3.0}, {"length": 2, "scaled": 4.0}]}
    columnar = {"inputs": {"text": ["abc"], "scale": [1.0]}}
    assert requests.post(multi + ":predict", json=columnar, timeout=10).json() == {
        "outputs": {"length": [3], "scaled": [2.0]}
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (":predict", {"instances": [[1, 2, 3]]}, 400, "has shape [1, 3] but the model expects"),
        (":predict", {"instances": [["a", "b", "c", "d"]]}, 400, "not of expected type: float"),
        (":predict", {"instances": []}, 400, "non-empty list"),
        (":predict", {"instances": [[1, 2, 3, 4]], "inputs": [[1]]}, 400, "only one of"),
        (":predict", {"rows": [[1]]}, 400, "Missing 'inputs' or 'instances' key"),
        (
            ":predict",
            {"instances": [[1, 2, 3, 4]], "signature_name": "nope"},
            400,
            "No signature was found with the name: nope",
        ),
        ("/versions/7:predict", {"instances": [[1, 2, 3, 4]]}, 404, "version 7 is not served"),
        ("/labels/canary:predict", {"instances": [[1, 2, 3, 4]]}, 400, "version label: canary"),
    ],
)
def test_client_mistakes_get_4xx_with_an_error(scorer, path, body, status, message):
    r = requests.post(scorer + path, json=body, timeout=10)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_malformed_oversized_and_unknown(scorer, multi):
    r = requests.post(scorer + ":predict", data="{not json", timeout=10)
    assert r.status_code == 400 and "JSON Parse error" in r.json()["error"]
    r = requests.post(
        scorer + ":predict", data=b"[" + b"1," * (9 * 1024 * 1024) + b"1]", timeout=30
    )
    assert r.status_code == 413 and "exceeds" in r.json()["error"]
    r = requests.post(
        scorer.replace("scorer", "other") + ":predict", json={"instances": [1]}, timeout=10
    )
    assert r.status_code == 404 and "this server serves: scorer" in r.json()["error"]
    r = requests.post(multi + ":predict", json={"instances": [{"text": "a"}]}, timeout=10)
    assert r.status_code == 400 and "missing ['scale']" in r.json()["error"]
    r = requests.post(
        multi + ":predict", json={"instances": [{"text": {"b64": "!!"}, "scale": 1}]}, timeout=10
    )
    assert r.status_code == 400 and "Invalid base64" in r.json()["error"]


def test_new_version_swaps_in_without_failing_a_request(models, tmp_path):
    # a copy of its own: the swap must not change what the other tests' server serves
    base = tmp_path / "swap"
    shutil.copytree(models / "scorer", base)
    (base / "labels.json").unlink()
    proc, url = start_server("swap", base)
    scorer = url + "/v1/models/swap"
    try:
        swap_in_under_load(scorer, models, base)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def swap_in_under_load(scorer: str, models, base) -> None:
    codes, stop = [], threading.Event()

    def hammer():
        session = requests.Session()
        while not stop.is_set():
            r = session.post(scorer + ":predict", json={"instances": [[0, 0, 0, 0]]}, timeout=30)
            codes.append((r.status_code, r.json().get("predictions")))
            stop.wait(PACE)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()

    def wait_for_answers(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(codes) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    wait_for_answers(20)  # traffic flows before the swap ...
    shutil.copytree(models / "spare" / "3", base / "3")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(scorer, timeout=10).json()["model_version_status"]
        if status[0]["version"] == "3":
            break
        time.sleep(0.2)
    wait_for_answers(len(codes) + 20)  # ... and after it
    stop.set()
    for t in threads:
        t.join()
    assert status[0]["version"] == "3"
    assert codes and all(code == 200 for code, _ in codes), set(c for c, _ in codes)
    answers = {p[0][0] for _, p in codes}
    assert answers == {10.0, 100.0}, answers  # version 2, then version 3 — nothing else


def test_health_and_metrics(scorer):
    base = scorer.split("/v1/")[0]
    r = requests.post(scorer + ":predict", json={"instances": [[0, 0, 0, 0]]}, timeout=30)
    assert r.status_code == 200  # counted below, whatever ran before
    assert requests.get(base + "/healthz", timeout=10).json()["status"] == "ok"
    text = requests.get(base + "/metrics", timeout=10).text
    assert 'hubforge_serving_requests_total{code="200",method="predict"}' in text
    assert "hubforge_serving_latency_seconds_bucket" in text


def test_batching_gives_each_request_its_own_rows(tmp_path):
    keras_model(tmp_path / "batched", 1, bias=5.0)  # its own model: y = sum(x) + 5
    proc, url = start_server(
        "batched", tmp_path / "batched", "--max-batch-size", "32", "--batch-timeout-ms", "20"
    )
    try:
        predict = url + "/v1/models/batched:predict"
        results = {}

        def call(i):
            r = requests.post(predict, json={"instances": [[i, 0, 0, 0], [0, i, 0, 1]]}, timeout=30)
            results[i] = (r.status_code, r.json())

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, (code, body) in results.items():
            assert code == 200, body
            assert body["predictions"] == [[i + 5.0], [i + 1 + 5.0]], (i, body)
        metrics = requests.get(url + "/metrics", timeout=10).text
        count = float(re.search(r"hubforge_serving_batch_size_count (\S+)", metrics).group(1))
        total = float(re.search(r"hubforge_serving_batch_size_sum (\S+)", metrics).group(1))
        assert total == 32 and count < 16, (count, total)  # fewer model calls than requests
        # what an HPA scales on: the requests being answered, back to none once all are
        assert "hubforge_endpoint_requests_in_flight 0.0" in metrics, metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# model_servers/http_rest_api_handler_test.cc:178-258 (UnsupportedApiCalls), github.com/
# tensorflow/serving at 9d981c5c: every malformed URL is a JSON 400, never an HTML page
MALFORMED = [
    ("GET", "/v1/foo", "Malformed request"),  # :183
    ("POST", "/v1/foo", "Malformed request"),  # :188
    ("GET", "/v1/models", "Missing model name"),  # :193
    ("GET", "/v1/models/debug/model_name", "Malformed request"),  # :197
    ("POST", "/v1/models", "Malformed request"),  # :202
    ("GET", "/v1/models/scorer/version/50:predict", "Malformed request"),  # :212
    ("POST", "/v1/models/scorer/version/50:regress", "Malformed request"),  # :217
    ("POST", "/v1/models/scorer/versions/HELLO:predict", "Malformed request"),  # :222
    ("POST", f"/v1/models/scorer/versions/{2**64 - 1}:predict", "Failed to convert version"),
    ("POST", "/v1/models/scorer/metadata", "Malformed request"),  # :236
    ("POST", "/v1/models/scorer/label/some_label:regress", "Malformed request"),  # :241
    ("POST", "/v1/models/scorer/versions/50/labels/some_label:regress", "Malformed request"),
]


@pytest.mark.parametrize(("method", "path", "message"), MALFORMED)
def test_malformed_urls_answer_json_400_as_tf_serving_does(scorer, method, path, message):
    root = scorer.split("/v1/")[0]
    r = requests.request(method, root + path, json={"instances": [[1, 2, 3, 4]]}, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("application/json")
    assert message in r.json()["error"]
