"""GPU allocation through the hubforge service with a configured inventory of two GPUs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hub


def gpus_of(workbench, name, token):
    r = workbench.api("GET", f"user/{name}/hubforge/api/status", token)
    assert r.status_code == 200, r.text
    return r.json()["gpus"]


def test_exclusive_gpus(workbench):
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    tokens = {name: workbench.create_user(name) for name in ("g1", "g2", "g3")}
    try:
        for name in ("g1", "g2"):
            r = workbench.spawn(name, tokens[name], profile="gpu-1")
            assert r.status_code in (201, 202), r.text
        first, second = (
            gpus_of(workbench, "g1", tokens["g1"]),
            gpus_of(workbench, "g2", tokens["g2"]),
        )
        assert len(first) == 1 and len(second) == 1
        assert set(first) | set(second) == {"0", "1"}

        r = workbench.spawn("g3", tokens["g3"], profile="gpu-1")
        assert r.status_code == 409, r.text
        assert "only 0 of 2 are free" in r.json()["message"]

        admin = workbench.admin_token()
        status = workbench.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
        assert status["free"] == 0
        assert status["allocations"] == {"g1/": first, "g2/": second}

        workbench.stop_server("g1", tokens["g1"])
        status = workbench.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
        assert status["free"] == 1

        r = workbench.spawn("g3", tokens["g3"], profile="gpu-1")
        assert r.status_code in (201, 202), r.text
        assert gpus_of(workbench, "g3", tokens["g3"]) == first
        for name in ("g2", "g3"):
            workbench.stop_server(name, tokens[name])
        status = workbench.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
        assert status["free"] == 2
    finally:
        for name in tokens:  # a failure leaves no GPU held for the tests after this one
            workbench.ensure_stopped(name)


def test_two_gpu_profile_when_one_is_taken(workbench):
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    a, b = workbench.create_user("h1"), workbench.create_user("h2")
    try:
        assert workbench.spawn("h1", a, profile="gpu-1").status_code in (201, 202)
        r = workbench.spawn("h2", b, profile="gpu-2")
        assert r.status_code == 409
        assert "2 GPU(s) requested but only 1 of 2 are free" in r.json()["message"]
    finally:
        for name in ("h1", "h2"):
            workbench.ensure_stopped(name)
