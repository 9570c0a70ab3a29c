"""Idle servers are stopped per profile: a GPU server sooner than a CPU one (real hub)."""

from __future__ import annotations

import time

import pytest

from tests.workbench import start_workbench

pytestmark = pytest.mark.hub

# One fake GPU; GPU servers may idle 6 s, CPU servers keep the default hour.
CONFIG = (
    'c.Workbench.gpus = ["0"]\n'
    'c.Workbench.label_studio_python = ""\n'
    "c.Workbench.gpu_idle_timeout = 6\n"
    "c.Workbench.cull_interval = 1\n"
)


@pytest.fixture(scope="module")
def culling_workbench(tmp_path_factory):
    wb = start_workbench(tmp_path_factory.mktemp("culling"), base_url="/", config=CONFIG)
    yield wb
    wb.down()


def test_idle_gpu_server_is_stopped_and_its_gpu_freed(culling_workbench):
    wb = culling_workbench
    tokens = {name: wb.create_user(name) for name in ("gina", "carl")}
    admin = wb.admin_token()
    assert wb.spawn("carl", tokens["carl"], profile="cpu").status_code in (201, 202)
    assert wb.spawn("gina", tokens["gina"], profile="gpu-1").status_code in (201, 202)
    status = wb.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
    assert status["allocations"] == {"gina/": ["0"]}

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if not wb.api("GET", "hub/api/users/gina", admin).json()["servers"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("gina's idle GPU server was not stopped within 40 s")

    # the GPU is free again, and the CPU server (an hour's limit) is untouched
    status = wb.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
    assert status["free"] == 1 and status["allocations"] == {}
    carl = wb.api("GET", "hub/api/users/carl", admin).json()["servers"]
    assert carl[""]["ready"] is True
    assert "Stopped gina's server (gpu-1 profile)" in wb.hub_log()
