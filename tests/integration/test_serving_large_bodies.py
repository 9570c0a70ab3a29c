"""One big predict does not block an endpoint: while a ~10 MB predict is parsed, run and
answered, small predicts to the same endpoint keep being answered; big bodies get the same
answers (and errors) as small ones. Real endpoint processes, real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.models import keras_model, multi_io_model, start_serving

ROW = {"instances": [[1, 2, 3, 4]]}
PAD = "x" * 400_000  # an extra key TF Serving ignores: the same request, over 256 KiB


def big_body(rows: int = 330_000) -> bytes:
    """A predict of ``rows`` rows, ~10 MB of JSON at the default."""
    return json.dumps({"instances": [[0.123456, 1.5, 2.25, 3.125]] * rows}).encode()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    keras_model(root / "sum", 1, bias=0.0)
    multi_io_model(root / "multi")
    return root


@pytest.fixture(scope="module")
def endpoint(models):
    proc, url = start_serving("sum", models / "sum", "--poll", "0.5")
    yield proc, url + "/v1/models/sum"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def multi(models):
    proc, url = start_serving("multi", models / "multi", "--poll", "0.5")
    yield url + "/v1/models/multi"
    proc.terminate()
    proc.wait(timeout=30)


def test_small_predicts_are_answered_while_a_big_one_runs(endpoint):
    _, url = endpoint
    body, done = big_body(), {}

    def big() -> None:
        t0 = time.perf_counter()
        r = requests.post(url + ":predict", data=body, timeout=300)
        done["seconds"], done["answer"] = time.perf_counter() - t0, r

    small = requests.Session()
    assert small.post(url + ":predict", json=ROW, timeout=30).json() == {"predictions": [[10.0]]}
    caller = threading.Thread(target=big)
    caller.start()
    latencies = []
    while caller.is_alive():
        t0 = time.perf_counter()
        r = small.post(url + ":predict", json=ROW, timeout=60)
        if caller.is_alive():  # answered before the big one was
            latencies.append(time.perf_counter() - t0)
        assert r.json() == {"predictions": [[10.0]]}
        time.sleep(0.005)
    caller.join()

    answer = done["answer"]
    assert answer.status_code == 200, answer.text[:300]
    predictions = answer.json()["predictions"]
    assert len(predictions) == 330_000 and predictions[0] == predictions[-1] == [6.998456]
    # Before: the event loop parsed and encoded the big body itself: 3 small predicts got
    # through, the slowest took 60% of the big one's time. Now dozens, each a small share.
    assert len(latencies) >= 10, f"{len(latencies)} small predicts during {done['seconds']:.1f} s"
    slowest = max(latencies)
    assert slowest < done["seconds"] / 4, f"slowest {slowest:.2f} s of {done['seconds']:.2f} s"


def same_answer(url: str, request: dict) -> requests.Response:
    """``request`` sent small and again padded past the large-body threshold: same answer."""
    small = requests.post(url, json=request, timeout=60)
    large = requests.post(url, json={**request, "padding": PAD}, timeout=60)
    assert (large.status_code, large.text) == (small.status_code, small.text), request
    assert large.headers["Content-Type"] == small.headers["Content-Type"]
    return small


@pytest.mark.parametrize(
    "request_, status",
    [
        (ROW, 200),
        ({"inputs": [[1, 2, 3, 4], [0.5, 0, 0, 0]]}, 200),
        ({"instances": [[1, 2, 3]]}, 400),  # wrong shape
        ({"instances": [["a", 2, 3, 4]]}, 400),  # wrong type
        ({"instances": [[1, 2, 3, 4], [1, 2]]}, 400),  # ragged
        ({"instances": [[1, 2, 3, 4]], "signature_name": "nope"}, 400),
        ({"instances": [[1, 2, 3, 4]], "signature_name": 3}, 400),
        ({"instances": []}, 400),
        ({"rows": [[1, 2, 3, 4]]}, 400),  # neither instances nor inputs
        ({"instances": [{"x": [1, 2, 3, 4]}]}, 400),  # names an input the model lacks
    ],
)
def test_big_bodies_get_the_answers_small_ones_get(endpoint, request_, status):
    _, url = endpoint
    assert same_answer(url + ":predict", request_).status_code == status
    # no such version: 404, unless the body itself is not a predict (400 first, as TF Serving)
    assert same_answer(url + "/versions/9:predict", request_).status_code in (400, 404)


def test_big_bodies_with_named_and_binary_inputs(multi):
    rows = {"instances": [{"text": {"b64": "aGk="}, "scale": 1.5}, {"text": "abc", "scale": 2}]}
    assert same_answer(multi + ":predict", rows).json() == {
        "predictions": [{"length": 2, "scaled": 3.0}, {"length": 3, "scaled": 4.0}]
    }
    bad = {"instances": [{"text": {"b64": "%%"}, "scale": 1.0}]}
    assert same_answer(multi + ":predict", bad).status_code == 400


def test_malformed_big_bodies_are_refused_as_small_ones(endpoint):
    _, url = endpoint
    for path in (":predict", "/versions/9:predict"):
        r = requests.post(url + path, data=b'{"instances": [[1, 2, 3, 4]], "p": "' + b"x" * 400_000)
        assert r.status_code == 400 and r.json()["error"].startswith("JSON Parse error")
    r = requests.post(url + ":predict", data=b"[" * 400_000, timeout=60)
    assert r.status_code == 400 and "error" in r.json()


def test_a_big_answer_is_the_small_answers_together(endpoint):
    """20,000 rows (over both thresholds) answer what 5 requests of 4,000 rows answer."""
    _, url = endpoint
    rows = [[i * 0.1, 1, 2, 3.3] for i in range(20_000)]
    big = requests.post(url + ":predict", json={"instances": rows}, timeout=120)
    parts = [
        requests.post(url + ":predict", json={"instances": rows[i : i + 4000]}, timeout=60)
        for i in range(0, 20_000, 4000)
    ]
    assert big.headers["Content-Type"] == parts[0].headers["Content-Type"]
    together = [p for part in parts for p in part.json()["predictions"]]
    assert big.json()["predictions"] == together
    assert big.text.startswith('{"predictions": [[6.3], [6.4], [6.5]')


def test_a_killed_endpoint_leaves_no_decoding_process(models):
    proc, url = start_serving("sum", models / "sum", "--poll", "0.5")
    try:
        r = requests.post(url + "/v1/models/sum:predict", data=big_body(20_000), timeout=120)
        assert r.status_code == 200
        helpers = psutil.Process(proc.pid).children(recursive=True)
        assert helpers, "the big body was decoded in a codec process"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    _, running = psutil.wait_procs(helpers, timeout=10)
    assert running == [], f"left running: {running}"


# -- classify and regress: big bodies decoded off the endpoint's loop ----------------------
HALF_PLUS_TWO = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "tfserving"


@pytest.fixture(scope="module")
def half_plus_two():
    base = HALF_PLUS_TWO / "saved_model_half_plus_two_cpu"
    assert base.is_dir(), f"{base} is missing (../shared/fixtures)"
    proc, url = start_serving("hp2", base, "--poll", "0.5")
    yield url + "/v1/models/hp2"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("verb", "signature", "one"),
    [("classify", "classify_x_to_y", [["", 3.0]]), ("regress", "regress_x_to_y", 3.0)],
)
def test_big_classify_and_regress_bodies_get_the_small_answers(half_plus_two, verb, signature, one):
    """TF Serving's own model (y = x/2 + 2): 40,000 examples (~0.5 MB, decoded in the codec
    process) answer exactly as one example does, 40,000 times; a bad example among them is
    refused with the message a small body gets."""
    small = {"signature_name": signature, "examples": [{"x": 2.0}]}
    r = requests.post(f"{half_plus_two}:{verb}", json=small, timeout=60)
    assert r.status_code == 200 and r.json() == {"results": [one]}, r.text
    big = {"signature_name": signature, "examples": [{"x": 2.0}] * 40_000}
    raw = json.dumps(big).encode()
    assert len(raw) > 256 * 1024
    r = requests.post(f"{half_plus_two}:{verb}", data=raw, timeout=300)
    assert r.status_code == 200 and r.json() == {"results": [one] * 40_000}
    bad = {"signature_name": signature, "examples": [{"x": 2.0}] * 30_000 + [{"x": [1, "a"]}]}
    refused = requests.post(f"{half_plus_two}:{verb}", data=json.dumps(bad), timeout=300)
    alone = {"signature_name": signature, "examples": [{"x": [1, "a"]}]}
    expected = requests.post(f"{half_plus_two}:{verb}", json=alone, timeout=60)
    assert refused.status_code == expected.status_code == 400
    assert refused.json() == expected.json()
