"""Bad input never becomes a 500: every REST route of the service, the gateway and an
endpoint answers malformed bodies, paths and query values with a 4xx that says why, the
processes stay up, and nothing is written."""

from __future__ import annotations

import json

import pytest

from tests.models import keras_model

pytestmark = pytest.mark.hub
API = "services/hubforge/api"
DEEP = b"[" * 100_000 + b"]" * 100_000
NASTY_BODIES = [
    DEEP,
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b"[]",
    b'"a string"',
    b"null",
    b"{not json",
    b"\xff\xfe\x00",
    json.dumps({"name": 10**30, "model_dir": ["x"], "version": -1}).encode(),
    b'{"name": NaN, "version": Infinity}',
    json.dumps({"script": "print(1)", "spec": {"name": "x", "cpu": "NaN"}}).encode(),
    b'{"script": "print(1)", "spec": {"name": "x", "cpu": NaN}}',
    json.dumps({"script": "print(1)", "spec": {"name": "x", "memory": {"a": 1}}}).encode(),
    json.dumps({"script": "print(1)", "spec": {"name": "x", "workers": 10**30}}).encode(),
    json.dumps({"script": "print(1)", "spec": {"name": "x", "params": [1, 2]}}).encode(),
    json.dumps({"script": "print(1)", "spec": ["x"]}).encode(),
    json.dumps({"script": 5, "spec": {"name": "\u0000"}}).encode(),
    json.dumps({"name": "x" * 10_000, "batching": {"max_batch_size": 10**30}}).encode(),
    json.dumps({"member": {"a": 1}, "name": None}).encode(),
]
ROUTES = [
    ("POST", f"{API}/jobs"),
    ("POST", f"{API}/endpoints"),
    ("POST", f"{API}/labeling/shares"),
    ("POST", f"{API}/users"),
    ("POST", f"{API}/gpus"),
]
GETS = [
    f"{API}/jobs/nope-1/logs/worker-0?offset=1000000000000000000000000000000",
    f"{API}/jobs/nope-1/logs/worker-0?offset=-5",
    f"{API}/jobs/nope-1/logs/worker-0?offset=abc",
    f"{API}/jobs/..%2F..%2Fstate",
    f"{API}/endpoints/..%2F..",
    f"{API}/labeling/credentials?owner=" + "x%00" * 2000,
    f"{API}/labeling/login-link?next=//evil.example/&bind={'a' * 64}&owner=" + "x" * 5000,
    f"{API}/labeling/login-link?bind=not-a-hash",
]


@pytest.fixture(scope="module")
def mallory(workbench):
    return workbench.create_user("mallory")


def test_service_routes_answer_4xx_to_malformed_bodies(workbench, mallory):
    before = sorted(p.relative_to(workbench.data_dir) for p in workbench.data_dir.rglob("*"))
    for method, route in ROUTES:
        for body in NASTY_BODIES:
            r = workbench.api(
                method, route, mallory, data=body, headers={"Content-Type": "application/json"}
            )
            assert 400 <= r.status_code < 500, (route, body[:60], r.status_code, r.text[:300])
            assert r.json()["message"], (route, body[:60])
    for route in GETS:
        r = workbench.api("GET", route, mallory)
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text[:300])
    assert workbench.api("GET", f"{API}/status", mallory).status_code == 200, "still up"
    after = sorted(p.relative_to(workbench.data_dir) for p in workbench.data_dir.rglob("*"))
    written = [
        p
        for p in set(after) - set(before)
        if ("mallory" in str(p) and "jobs" in str(p)) or "models" in str(p)
    ]
    assert written == [], written


def test_an_endpoint_answers_4xx_to_malformed_requests(workbench, mallory):
    export = keras_model(workbench.data_dir / "hdfs" / "users" / "mallory" / "exports", 1)
    r = workbench.api(
        "POST", f"{API}/endpoints", mallory, json={"name": "fuzz", "model_dir": str(export)}
    )
    assert r.status_code == 201, r.text
    gateway = "services/hubforge/endpoints/mallory/fuzz/v1/models/fuzz"
    try:
        bodies = [
            *NASTY_BODIES,
            json.dumps({"instances": [[[[[[[[1]]]]]]]]}).encode(),
            b'{"instances": ' + b"[" * 900 + b"1" + b"]" * 900 + b"}",
            json.dumps({"instances": [[1, 2, 3, 4]], "signature_name": "nope"}).encode(),
            json.dumps({"inputs": {"nope": [1]}}).encode(),
        ]
        for body in bodies:
            r = workbench.api("POST", gateway + ":predict", mallory, data=body)
            assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text[:300])
            assert r.json()["error"], body[:60]
        r = workbench.api("POST", gateway + ":predict", mallory, json={"instances": [[1, 1, 1, 1]]})
        assert r.status_code == 200 and r.json() == {"predictions": [[4.0]]}, "still serving"
    finally:
        workbench.api("DELETE", f"{API}/endpoints/fuzz", mallory)
