"""Endpoints run by the hubforge service, called through the hub's gateway with tokens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
import requests

from tests.callers import PACE
from tests.cleanup import leave_nothing_running
from tests.kernel import execute
from tests.models import keras_model

pytestmark = pytest.mark.hub
API = "services/hubforge/api/endpoints"
GATEWAY = "services/hubforge/endpoints/sam/scorer/v1/models/scorer"


@pytest.fixture(scope="module")
def sam(workbench):
    token = workbench.create_user("sam")
    exports = workbench.data_dir / "hdfs" / "users" / "sam" / "exports"
    keras_model(exports, 1, bias=0.0)
    keras_model(exports, 2, bias=5.0)
    return token


def fresh(workbench, token: str, name: str, user: str = "sam") -> None:
    """No endpoint ``name`` and no versions of it on disk: each test starts from nothing."""
    assert workbench.api("DELETE", f"{API}/{name}", token).status_code in (200, 404)
    shutil.rmtree(workbench.data_dir / "hdfs" / "users" / user / "models" / name, True)


@pytest.fixture(scope="module")
def scorer(workbench, sam):
    """sam's endpoint 'scorer' serving versions 1 (y = sum(x)) and 2 (y = sum(x) + 5); one
    for the module (its tests only read it: the deploy-and-undeploy story has its own)."""
    exports = workbench.data_dir / "hdfs" / "users" / "sam" / "exports"
    fresh(workbench, sam, "scorer")
    for version in ("1", "2"):
        body = {"name": "scorer", "model_dir": str(exports / version)}
        r = workbench.api("POST", API, sam, json=body)
        assert r.status_code == 201, r.text
    yield
    fresh(workbench, sam, "scorer")


def test_deploy_predict_through_the_gateway_and_undeploy(workbench, sam):
    exports = workbench.data_dir / "hdfs" / "users" / "sam" / "exports"
    gateway = "services/hubforge/endpoints/sam/adder/v1/models/adder"
    fresh(workbench, sam, "adder")
    r = workbench.api("POST", API, sam, json={"name": "adder", "model_dir": str(exports / "1")})
    assert r.status_code == 201, r.text
    endpoint = r.json()
    assert endpoint["versions"] == [1] and endpoint["running"]
    assert endpoint["url"] == f"/hub@forge%20space/{gateway}"
    rows = {"instances": [[1, 1, 1, 1]]}
    r = workbench.api("POST", gateway + ":predict", sam, json=rows)
    assert r.status_code == 200 and r.json() == {"predictions": [[4.0]]}
    assert (
        workbench.api("GET", gateway, sam).json()["model_version_status"][0]["state"] == "AVAILABLE"
    )
    # A new version swaps in; the old one stays addressable only while served.
    r = workbench.api("POST", API, sam, json={"name": "adder", "model_dir": str(exports / "2")})
    assert r.status_code == 201 and r.json()["versions"] == [1, 2]
    assert workbench.api("POST", gateway + ":predict", sam, json=rows).json() == {
        "predictions": [[9.0]]
    }
    # Client mistakes pass through as TF Serving answers them.
    r = workbench.api("POST", gateway + ":predict", sam, json={"instances": [[1, 2]]})
    assert r.status_code == 400 and "shape" in r.json()["error"]
    # Admins may call it too.
    r = workbench.api("POST", gateway + ":predict", workbench.admin_token(), json=rows)
    assert r.status_code == 200 and r.json() == {"predictions": [[9.0]]}
    r = workbench.api("DELETE", f"{API}/adder", sam)
    assert r.status_code == 200 and r.json()["name"] == "adder" and not r.json()["running"]
    r = workbench.api("POST", gateway + ":predict", sam, json=rows)
    assert r.status_code == 404 and "No endpoint 'adder'" in r.json()["error"]


def test_gateway_refuses_strangers(workbench, sam):
    rows = {"instances": [[1, 1, 1, 1]]}
    r = workbench.api("POST", GATEWAY + ":predict", json=rows)
    assert r.status_code == 403 and "token" in r.json()["error"]
    eve = workbench.create_user("eve2")
    r = workbench.api("POST", GATEWAY + ":predict", eve, json=rows)
    assert r.status_code == 403 and "eve2 may not call sam's endpoint" in r.json()["error"]
    assert "custom:hubforge:endpoints:call!server=sam/scorer" in r.json()["error"]
    assert workbench.api("GET", API, eve).json()["endpoints"] == []
    assert workbench.api("DELETE", f"{API}/scorer", eve).status_code == 404


def test_other_users_cannot_reach_the_endpoint_process_on_loopback(workbench, sam, scorer):
    """Bob finds the port (ports are no secret on one machine: /proc/net/tcp) and calls it
    from his own server's proxy and straight on loopback: the process answers only the
    gateway, which checked the caller's token."""
    record = workbench.api("GET", f"{API}/scorer", sam).json()
    assert "key" not in record and all(
        "key" not in e for e in workbench.api("GET", API, sam).json()["endpoints"]
    )
    state = json.loads((workbench.service_dir / "endpoints.json").read_text())
    port = state["sam/scorer"]["port"]
    rows = {"instances": [[1, 1, 1, 1]]}
    for method, path, body in (
        ("GET", "v1/models/scorer/metadata", None),
        ("POST", "v1/models/scorer:predict", rows),
        ("GET", "v1/models/scorer", None),
        ("GET", "metrics", None),
    ):
        r = requests.request(method, f"http://127.0.0.1:{port}/{path}", json=body, timeout=30)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "answers only the Hubforge gateway" in r.json()["error"]
    bob = workbench.create_user("bob-loop")
    try:
        assert workbench.spawn("bob-loop", bob).status_code in (201, 202)
        r = workbench.api("GET", f"user/bob-loop/proxy/{port}/v1/models/scorer/metadata", bob)
        # refused by the endpoint (one account for all), or before it by bob's server, which
        # proxies only his own account's ports (isolation 'accounts')
        refusals = ("answers only the Hubforge gateway", "is another account")
        assert r.status_code == 403 and any(m in r.text for m in refusals), r.text
        r = workbench.api(
            "POST", f"user/bob-loop/proxy/{port}/v1/models/scorer:predict", bob, json=rows
        )
        assert r.status_code == 403 and "predictions" not in r.text
    finally:
        workbench.ensure_stopped("bob-loop")
    # the owner, through the gateway, is served as before
    r = workbench.api("POST", GATEWAY + ":predict", sam, json=rows)
    assert r.status_code == 200 and r.json() == {"predictions": [[9.0]]}


def scoped_token(workbench, user: str, token: str, *scopes: str):
    return workbench.api(
        "POST", f"hub/api/users/{user}/tokens", token, json={"scopes": list(scopes)}
    )


def test_tokens_with_the_call_scope(workbench, sam, scorer):
    """An application's token that may only call: one endpoint, or all of an owner's."""
    rows = {"instances": [[1, 1, 1, 1]]}
    scope = "custom:hubforge:endpoints:call"
    r = scoped_token(workbench, "sam", sam, f"{scope}!server=sam/scorer")
    assert r.status_code == 201, r.text
    app = r.json()["token"]
    r = workbench.api("POST", GATEWAY + ":predict", app, json=rows)
    assert r.status_code == 200 and r.json() == {"predictions": [[9.0]]}  # version 2
    metadata = workbench.api("GET", GATEWAY + "/metadata", app).json()
    assert metadata["model_spec"]["version"] == "2"
    assert "serving_default" in metadata["metadata"]["signature_def"]["signature_def"]
    # ... but it cannot manage endpoints, nor call another one
    assert workbench.api("GET", API, app).status_code == 403
    r = workbench.api("POST", API, app, json={"name": "x", "model_dir": "/tmp"})
    assert r.status_code == 403
    other = "services/hubforge/endpoints/sam/other/v1/models/other:predict"
    assert workbench.api("POST", other, app, json=rows).status_code == 403
    # nor leave the model's API through the path: the gateway forwards normalised paths only
    for escape in ("/..%2F..%2F..%2Fmetrics", "/../../../healthz", "/versions/1/..%2F..%2F"):
        r = workbench.api("GET", GATEWAY + escape, app)
        assert r.status_code in (400, 404) and "hubforge_serving" not in r.text, (escape, r.text)

    # the Open Inference Protocol on the same endpoint, same token: JSON and binary tensors
    v2 = "services/hubforge/endpoints/sam/scorer/v2/models/scorer"
    meta = workbench.api("GET", v2, app).json()
    (x,), (y,) = meta["inputs"], meta["outputs"]
    assert meta["versions"] == ["2"] and x["datatype"] == "FP32" and x["shape"] == [-1, 4]
    infer = {"inputs": [{**x, "shape": [1, 4], "data": [1, 1, 1, 1]}]}
    r = workbench.api("POST", v2 + "/infer", app, json=infer)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [9.0] and r.json()["model_version"] == "2"
    head = json.dumps(
        {
            "inputs": [
                {**x, "shape": [1, 4], "parameters": {"binary_data_size": 16}},
            ],
            "outputs": [{"name": y["name"], "parameters": {"binary_data": True}}],
        }
    ).encode()
    r = workbench.api(
        "POST",
        v2 + "/infer",
        app,
        data=head + np.ones(4, dtype=np.float32).tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 200, r.text
    size = int(r.headers["Inference-Header-Content-Length"])
    assert np.frombuffer(r.content[size:], dtype=np.float32).tolist() == [9.0]
    assert workbench.api("GET", v2 + "/ready", app).json() == {"name": "scorer", "ready": True}
    for escape in ("/..%2F..%2Fmetrics", "/versions/1/..%2F..%2F..%2Fhealthz"):
        r = workbench.api("GET", v2 + escape, app)
        assert r.status_code in (400, 404) and "hubforge_serving" not in r.text, (escape, r.text)
    stranger = workbench.create_user("eve4")
    r = workbench.api("POST", v2 + "/infer", stranger, json=infer)
    assert r.status_code == 403 and "eve4 may not call sam's endpoint" in r.json()["error"]

    owner_wide = scoped_token(workbench, "sam", sam, f"{scope}!user=sam").json()["token"]
    assert workbench.api("POST", GATEWAY + ":predict", owner_wide, json=rows).status_code == 200
    # Nobody can grant themselves someone else's endpoint.
    eve = workbench.create_user("eve3")
    r = scoped_token(workbench, "eve3", eve, f"{scope}!user=sam")
    assert r.status_code in (400, 403), r.text
    r = scoped_token(workbench, "eve3", eve, f"{scope}!user=eve3")
    assert r.status_code == 201
    r = workbench.api("POST", GATEWAY + ":predict", r.json()["token"], json=rows)
    assert r.status_code == 403


def test_changing_batching_under_load_fails_no_request(workbench, sam):
    exports = workbench.data_dir / "hdfs" / "users" / "sam" / "exports"
    fresh(workbench, sam, "batchy")
    body = {"name": "batchy", "model_dir": str(exports / "1")}
    try:
        r = workbench.api("POST", API, sam, json=body)
        assert r.status_code == 201 and r.json()["batching"]["max_batch_size"] == 0
        url = "services/hubforge/endpoints/sam/batchy/v1/models/batchy:predict"
        codes: list[int] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                codes.append(
                    workbench.api("POST", url, sam, json={"instances": [[1, 1, 1, 1]]}).status_code
                )
                stop.wait(PACE)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()

        def answered(count: int) -> None:  # until the clients have had ``count`` answers
            deadline = time.monotonic() + 120
            while len(codes) < count:
                assert time.monotonic() < deadline, f"{len(codes)} answers, not {count}"
                time.sleep(0.05)

        try:
            answered(10)  # under load before the change ...
            batching = {"max_batch_size": 8, "batch_timeout_ms": 1}
            r = workbench.api(
                "POST",
                API,
                sam,
                json={**body, "model_dir": str(exports / "2"), "batching": batching},
            )
            answered(len(codes) + 10)  # ... and after it
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert r.status_code == 201, r.text
        assert r.json()["batching"] == {"max_batch_size": 8, "batch_timeout_ms": 1.0}
        assert r.json()["versions"] == [1, 2]
        assert len(codes) > 20 and set(codes) == {200}, sorted(set(codes))
        # kept when a later deploy does not say
        r = workbench.api("GET", f"{API}/batchy", sam)
        assert r.json()["batching"]["max_batch_size"] == 8
        r = workbench.api("POST", API, sam, json={**body, "batching": {"max_batch": 8}})
        assert r.status_code == 400 and "unknown ['max_batch']" in r.json()["message"]
        assert workbench.api("DELETE", f"{API}/batchy", sam).status_code == 200
    finally:
        workbench.api("DELETE", f"{API}/batchy", sam)  # gone already unless a check failed


def test_endpoint_quota(workbench):
    """The session's workbench allows 2 endpoints per user."""
    token = workbench.create_user("quinn")
    export = keras_model(workbench.data_dir / "hdfs" / "users" / "quinn" / "exports", 1)
    try:
        for name in ("one", "two"):
            r = workbench.api("POST", API, token, json={"name": name, "model_dir": str(export)})
            assert r.status_code == 201, r.text
        r = workbench.api("POST", API, token, json={"name": "three", "model_dir": str(export)})
        assert r.status_code == 403
        assert "You have 2 endpoints (limit 2)" in r.json()["message"]
        # a new version of an existing endpoint is not a new endpoint
        r = workbench.api("POST", API, token, json={"name": "two", "model_dir": str(export)})
        assert r.status_code == 201 and r.json()["versions"] == [1, 2]
        for name in ("one", "two"):
            assert workbench.api("DELETE", f"{API}/{name}", token).status_code == 200
    finally:
        leave_nothing_running(workbench, "quinn", token)


def test_deploy_mistakes(workbench, sam, scorer):
    exports = workbench.data_dir / "hdfs" / "users" / "sam" / "exports"
    cases = [
        ({"name": "Bad Name", "model_dir": str(exports / "1")}, "lowercase letters"),
        ({"name": "x", "model_dir": "/etc"}, "outside your data area"),
        ({"name": "x", "model_dir": str(exports)}, "not a SavedModel"),
        ({"name": "scorer", "model_dir": str(exports / "1"), "version": 1}, "exists already"),
    ]
    for body, message in cases:
        r = workbench.api("POST", API, sam, json=body)
        assert r.status_code == 400, (body, r.text)
        assert message in r.json()["message"], (body, r.text)
    r = workbench.api(
        "POST",
        "services/hubforge/endpoints/sam/nope/v1/models/nope:predict",
        sam,
        json={"instances": [[1]]},
    )
    assert r.status_code == 404 and "No endpoint 'nope'" in r.json()["error"]


def test_python_api_from_a_kernel(workbench, sam, scorer):
    try:
        assert workbench.spawn("sam", sam).status_code in (201, 202)
        outputs = execute(
            workbench,
            "sam",
            sam,
            (
                "from hubforge import serving\n"
                "ep = serving.get('scorer')\n"
                "print(ep.status, ep.versions, ep.predict([[0, 0, 0, 1]]))\n"
                "try:\n    ep.predict([[1]])\nexcept serving.BadRequest as e:\n    print('bad:', e)"
            ),
        )
        text = "".join(o.get("text", "") for o in outputs)
        assert "running [1, 2] [[6.0]]" in text, outputs
        assert "bad:" in text and "shape" in text
        workbench.stop_server("sam", sam)
        # The endpoint is the service's, not the server's: it keeps serving.
        r = workbench.api("POST", GATEWAY + ":predict", sam, json={"instances": [[0, 0, 0, 0]]})
        assert r.json() == {"predictions": [[5.0]]}
    finally:
        workbench.ensure_stopped("sam")


def test_cli_inside_the_users_server(workbench, sam):
    exports = workbench.data_dir / "hdfs" / "users" / "sam" / "exports"
    fresh(workbench, sam, "cli-ep")
    try:
        assert workbench.spawn("sam", sam).status_code in (201, 202)
        outputs = execute(
            workbench,
            "sam",
            sam,
            "\n".join(
                [
                    f"!hubforge serve deploy {exports / '1'} --name cli-ep",
                    "!hubforge serve list",
                    "!hubforge serve predict cli-ep '[[1, 1, 1, 1]]'",
                    "!hubforge serve predict cli-ep '[[1]]'",
                ]
            ),
            timeout=180,
        )
        text = "".join(o.get("text", "") for o in outputs)
        assert "cli-ep: versions [1]" in text and "curl -H" in text, text
        (curl,) = [line.strip() for line in text.splitlines() if line.strip().startswith("curl -H")]
        assert '{"instances": [[0, 0, 0, 0]]}' in curl  # shaped like the model's input
        # the printed line works as printed, with a token in $TOKEN
        ran = subprocess.run(
            ["bash", "-c", curl],
            env={**os.environ, "TOKEN": sam},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(ran.stdout) == {"predictions": [[0.0]]}, (ran.stdout, ran.stderr)
        assert "/services/hubforge/endpoints/sam/cli-ep/v1/models/cli-ep:predict" in text
        assert '{"predictions": [[4.0]]}' in text or "[[4.0]]" in text
        assert "error:" in text and "shape" in text
        outputs = execute(workbench, "sam", sam, "!hubforge serve undeploy cli-ep", timeout=120)
        assert "Undeployed cli-ep" in "".join(o.get("text", "") for o in outputs)
        workbench.stop_server("sam", sam)
    finally:
        workbench.api("DELETE", f"{API}/cli-ep", sam)
        workbench.ensure_stopped("sam")
