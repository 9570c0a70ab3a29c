"""The REST routes the JupyterLab sidebar calls, through the hub: what each answers, bad
input, and another user's token or server refused."""

from __future__ import annotations

import json
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.notebooks import training_notebook

pytestmark = pytest.mark.hub

ROUTES = [
    "endpoints",
    "endpoints/early/requests",
    "endpoints/early/traffic?window=1h",
    "labeling/projects",
    "gpus",
    "tunings",
    "base-models",
    "classifications",
    "schedules",
    "cron?cron=0+2+*+*+*",
    "job-check?path=train.ipynb",
    "mobile",
    "mobile/optimize-x",
]


def put(workbench, user, token, name, nb):
    r = workbench.api(
        "PUT",
        f"user/{user}/api/contents/{name}",
        token,
        json={"type": "notebook", "content": nbformat.from_dict(nb)},
    )
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def two_users(workbench, tmp_path_factory):
    tokens = {name: workbench.create_user(name) for name in ("side-ana", "side-bob")}
    for name, token in tokens.items():
        assert workbench.spawn(name, token).status_code in (201, 202)
    nb = json.loads(training_notebook(tmp_path_factory.mktemp("nb") / "train.ipynb").read_text())
    put(workbench, "side-ana", tokens["side-ana"], "train.ipynb", nb)
    yield tokens
    for name in tokens:
        workbench.ensure_stopped(name)


def test_job_check_gives_the_parameters_with_types_and_the_warnings(workbench, two_users):
    ana = two_users["side-ana"]
    r = workbench.api("GET", "user/side-ana/hubforge/api/job-check?path=train.ipynb", ana)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parameters"] == [
        {"name": "epochs", "value": 3, "type": "int"},
        {"name": "steps", "value": 10, "type": "int"},
        {"name": "delay", "value": 0.0, "type": "float"},
    ]
    assert body["warnings"] == []
    # TensorFlow before the notebook's own MultiWorkerMirroredStrategy: fine for one worker,
    # a warning with the cell for two; with hubforge.distribute.strategy() (made at the
    # job's start) no warning in any order
    early = new_notebook(
        cells=[
            new_code_cell("import tensorflow as tf\nx = tf.constant(1.0)"),
            new_code_cell("strategy = tf.distribute.MultiWorkerMirroredStrategy()"),
        ]
    )
    put(workbench, "side-ana", ana, "early.ipynb", early)
    one = workbench.api("GET", "user/side-ana/hubforge/api/job-check?path=early.ipynb", ana)
    two = workbench.api(
        "GET", "user/side-ana/hubforge/api/job-check?path=early.ipynb&workers=2", ana
    )
    assert one.json()["warnings"] == []
    (warning,) = two.json()["warnings"]
    assert "cell 1" in warning and "strategy" in warning, warning
    ours = new_notebook(
        cells=[
            new_code_cell("import tensorflow as tf\nx = tf.constant(1.0)"),
            new_code_cell("from hubforge import distribute\nstrategy = distribute.strategy()"),
        ]
    )
    put(workbench, "side-ana", ana, "ours.ipynb", ours)
    two = workbench.api(
        "GET", "user/side-ana/hubforge/api/job-check?path=ours.ipynb&workers=2", ana
    )
    assert two.json()["warnings"] == [], two.text


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", "notebook's path"),
        ("?path=train.ipynb&workers=two", "whole number"),
        ("?path=missing.ipynb", "give a notebook"),
        ("?path=../../../etc/passwd", "give a notebook"),
    ],
)
def test_job_check_refuses_bad_input_with_what_to_do(workbench, two_users, query, says):
    r = workbench.api("GET", f"user/side-ana/hubforge/api/job-check{query}", two_users["side-ana"])
    assert r.status_code == 400, r.text
    assert says in r.json()["message"]


def test_deploy_from_a_job_refuses_bad_bodies_and_other_users_jobs(workbench, two_users):
    ana, bob = two_users["side-ana"], two_users["side-bob"]
    for body in ({}, {"job": 3, "name": "x"}, {"job": "j", "name": "x", "extra": 1}):
        r = workbench.api("POST", "user/side-ana/hubforge/api/endpoints", ana, json=body)
        assert r.status_code == 400 and '{"job"' in r.json()["message"], r.text
    jobs = "user/side-ana/hubforge/api/jobs"
    # a job that cannot have finished while the test looks at it (each of its 1000 steps
    # sleeps 60 s), cancelled in the end whatever happens
    slow = workbench.api(
        "POST", jobs, ana, json={"path": "train.ipynb", "params": {"steps": 1000, "delay": 60.0}}
    )
    assert slow.status_code == 201, slow.text
    slow = slow.json()
    try:
        # bob names Ana's job from his own server: not his, so not found, nothing deployed
        r = workbench.api(
            "POST",
            "user/side-bob/hubforge/api/endpoints",
            bob,
            json={"job": slow["id"], "name": "stolen"},
        )
        assert r.status_code == 404, r.text
        assert workbench.api("GET", "user/side-bob/hubforge/api/endpoints", bob).json() == {
            "endpoints": []
        }
        # a job that has not succeeded yet cannot be deployed, and says why
        r = workbench.api(
            "POST",
            "user/side-ana/hubforge/api/endpoints",
            ana,
            json={"job": slow["id"], "name": "early"},
        )
        assert r.status_code == 400, r.text
        assert "deploy it once it has succeeded" in r.json()["message"], r.text
        assert workbench.api("GET", "user/side-ana/hubforge/api/endpoints", ana).json() == {
            "endpoints": []
        }
    finally:
        workbench.api("DELETE", f"{jobs}/{slow['id']}", ana)
    submitted = workbench.api(
        "POST", jobs, ana, json={"path": "train.ipynb", "params": {"epochs": 1, "steps": 2}}
    ).json()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = workbench.api("GET", f"{jobs}/{submitted['id']}", ana).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    assert job["state"] == "succeeded", job
    try:
        r = workbench.api(
            "POST",
            "user/side-ana/hubforge/api/endpoints",
            ana,
            json={"job": submitted["id"], "name": "early"},
        )
        assert r.status_code == 201 and r.json()["running"], r.text
        # bob cannot undeploy or try Ana's endpoint from his server; hers keeps answering
        assert (
            workbench.api("DELETE", "user/side-bob/hubforge/api/endpoints/early", bob).status_code
            == 404
        )
        tried = workbench.api(
            "POST",
            "user/side-bob/hubforge/api/endpoints/early",
            bob,
            json={"instances": [[0, 0, 0, 0]]},
        )
        assert tried.status_code == 404, tried.text
        mine = workbench.api(
            "POST",
            "user/side-ana/hubforge/api/endpoints/early",
            ana,
            json={"instances": [[0, 0, 0, 0]]},
        )
        assert mine.status_code == 200 and len(mine.json()["predictions"]) == 1, mine.text
        assert mine.json()["latency_ms"] > 0
        bad = workbench.api(
            "POST", "user/side-ana/hubforge/api/endpoints/early", ana, json={"rows": []}
        )
        assert bad.status_code == 400 and "instances" in bad.json()["message"]
        # saved requests for Try it: kept newest first, replaced by name, bad ones refused with
        # what to do, never reachable through bob's server, deleted one by one
        base = "user/side-ana/hubforge/api/endpoints/early/requests"
        assert workbench.api("GET", base, ana).json() == {"requests": []}
        for name, row in (("zeros", [0, 0, 0, 0]), ("ones", [1, 1, 1, 1]), ("zeros", [2, 2, 2, 2])):
            body = {"name": name, "request": {"instances": [row]}}
            r = workbench.api("POST", base, ana, json=body)
            assert r.status_code == 201, r.text
        kept = r.json()["requests"]
        assert [(x["name"], x["request"]["instances"]) for x in kept] == [
            ("zeros", [[2, 2, 2, 2]]),
            ("ones", [[1, 1, 1, 1]]),
        ]
        for body, says in (
            ({"name": " ", "request": {"instances": []}}, "1 to 60 printable"),
            ({"name": "x", "request": {"rows": []}}, '{"instances"'),
            ({"name": "x"}, '{"instances"'),
        ):
            r = workbench.api("POST", base, ana, json=body)
            assert r.status_code == 400 and says in r.json()["message"], r.text
        bobs = "user/side-bob/hubforge/api/endpoints/early/requests"
        assert workbench.api("GET", bobs, bob).status_code == 404  # not his endpoint
        assert workbench.api("POST", bobs, bob, json=body).status_code == 404
        saved = workbench.data_dir / "homes" / "side-ana" / ".hubforge" / "saved-requests"
        assert oct((saved / "early.json").stat().st_mode & 0o777) == "0o600"
        r = workbench.api("DELETE", f"{base}/ones", ana)
        assert r.status_code == 200 and [x["name"] for x in r.json()["requests"]] == ["zeros"]
        assert workbench.api("DELETE", f"{base}/ones", ana).status_code == 404
        gone = workbench.api("DELETE", "user/side-ana/hubforge/api/endpoints/early", ana)
        assert gone.status_code == 200 and gone.json()["running"] is False

    finally:
        workbench.api("DELETE", "user/side-ana/hubforge/api/endpoints/early", ana)


def test_optimize_for_mobile_answers_bad_input_with_what_to_send(workbench, two_users):
    ana = two_users["side-ana"]
    url = "user/side-ana/hubforge/api/mobile"
    listed = workbench.api("GET", url, ana)
    assert listed.status_code == 200 and listed.json() == {"optimizations": []}, listed.text
    refusals = [
        ({}, 400, 'Send {"job": "<job id>"}'),
        ({"job": "a", "endpoint": "b"}, 400, 'Send {"job"'),
        ({"job": 3}, 400, 'Send {"job"'),
        ({"job": "a", "speed": "fast"}, 400, "unknown: ['speed']"),
        ({"job": "a", "sparsity": "lots"}, 400, "not the right kind: ['sparsity']"),
        ({"job": "a", "gpus": True}, 400, "not the right kind: ['gpus']"),
        ({"job": "no-such-job"}, 404, "no-such-job"),
        ({"endpoint": "no-such-endpoint"}, 404, "no-such-endpoint"),
        ({"model": "../../etc"}, 400, "a path inside your home folder"),
        ({"model": "train.ipynb"}, 400, "is not a SavedModel"),
        ({"model": "train.ipynb", "variants": ["tiny"]}, 400, "unknown ['tiny']"),
        ({"model": "x", "data": "/etc/passwd"}, 400, "a path inside your home folder"),
    ]
    for body, status, words in refusals:
        r = workbench.api("POST", url, ana, json=body)
        assert r.status_code == status and words in r.json()["message"], (body, r.text)
    r = workbench.api("GET", f"{url}/no-such-job", ana)
    assert r.status_code == 404, r.text
    assert workbench.api("GET", url, ana).json() == {"optimizations": []}  # nothing started


@pytest.mark.parametrize("route", ROUTES)
def test_another_users_token_and_no_token_are_refused(workbench, two_users, route):
    bob = two_users["side-bob"]
    r = workbench.api("GET", f"user/side-ana/hubforge/api/{route}", bob, allow_redirects=False)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    r = workbench.api("GET", f"user/side-ana/hubforge/api/{route}", None, allow_redirects=False)
    assert r.status_code in (302, 403), (r.status_code, r.text[:200])
    assert "side-ana" not in r.text or r.status_code == 302


def test_gpu_status_counts_the_workbench_gpus(workbench, two_users):
    r = workbench.api("GET", "user/side-ana/hubforge/api/gpus", two_users["side-ana"])
    assert r.status_code == 200, r.text
    status = r.json()
    service = workbench.api("GET", "services/hubforge/api/status", workbench.admin_token()).json()
    assert status["workbench"]["total"] == service["gpus"]["total"] > 0  # the test inventory
    assert 0 <= status["workbench"]["free"] <= status["workbench"]["total"]
    assert status["visible"] == []  # a CPU server sees no GPU
