"""Idle GPUs come back while jobs wait for them (#33): a GPU server that is idle is stopped
sooner while the queue holds GPU jobs, and the first waiting job gets its GPU; a server whose
kernel runs a long cell (printing nothing) is never stopped. Real hub, spawner, service."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import websocket

from tests.callers import wait_for
from tests.kernel import execute
from tests.workbench import start_workbench

pytestmark = pytest.mark.hub

# Two fake GPUs; GPU servers keep the default 30 min unless jobs wait for GPUs: then 12 s.
# Servers report activity every 2 s (the hub measures idleness on those reports).
CONFIG = (
    'c.Workbench.gpus = ["0", "1"]\n'
    'c.Workbench.label_studio_python = ""\n'
    "c.Workbench.gpu_idle_timeout_when_queued = 12\n"
    "c.Workbench.activity_interval = 2\n"
    "c.Workbench.cull_interval = 1\n"
)
JOBS = "services/hubforge/api/jobs"


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    wb = start_workbench(tmp_path_factory.mktemp("gpu-culling"), base_url="/", config=CONFIG)
    yield wb
    wb.down()


def servers(wb, name: str) -> dict:
    return wb.api("GET", f"hub/api/users/{name}", wb.admin_token()).json()["servers"]


def test_an_idle_gpu_server_gives_its_gpu_to_a_waiting_job_a_busy_one_does_not(wb):
    tokens = {name: wb.create_user(name) for name in ("busy-bea", "idle-ivo", "queue-quinn")}
    for name in ("busy-bea", "idle-ivo"):
        assert wb.spawn(name, tokens[name], profile="gpu-1").status_code in (201, 202)
    # bea's kernel runs a long cell that prints nothing

    def long_cell() -> None:
        # the test stops her server at its end, the cell still running
        with contextlib.suppress(websocket.WebSocketConnectionClosedException):
            execute(wb, "busy-bea", tokens["busy-bea"], "import time\ntime.sleep(75)", 120)

    cell = threading.Thread(target=long_cell, daemon=True)
    cell.start()
    try:
        long_job = "import time\ntime.sleep(60)\n"
        job = {"spec": {"name": "wants", "gpus_per_worker": 1}, "script": long_job}
        r = wb.api("POST", JOBS, tokens["queue-quinn"], json=job)
        assert r.status_code == 201 and r.json()["state"] == "queued", r.text
        waiting = r.json()["id"]
        # the sidebar of a GPU server says what happens now (the JupyterLab warning's words)
        gpus = wb.api("GET", "user/busy-bea/hubforge/api/gpus", tokens["busy-bea"]).json()
        assert gpus["waiting_for_gpus"] == {"gpus": 1, "idle_limit_s": 12}

        # ivo's idle server goes, and the waiting job starts on its GPU
        wait_for(lambda: not servers(wb, "idle-ivo"), 60, "ivo's idle GPU server to stop")
        started = wait_for(
            lambda: (
                j
                if (j := wb.api("GET", f"{JOBS}/{waiting}", tokens["queue-quinn"]).json())["state"]
                != "queued"
                else None
            ),
            30,
            "the waiting job to start",
        )
        assert len(started["spec"]["devices"]) == 1
        assert "while jobs wait for 1 GPU(s)" in wb.hub_log()

        # another job waits: bea's server, whose cell still runs, is kept all the while
        more = {"spec": {"name": "more", "gpus_per_worker": 1}, "script": "print(1)\n"}
        r = wb.api("POST", JOBS, tokens["queue-quinn"], json=more)
        assert r.status_code == 201 and r.json()["state"] == "queued", r.text
        deadline = time.monotonic() + 30  # more than twice the 12 s limit
        while time.monotonic() < deadline:
            assert servers(wb, "busy-bea")[""]["ready"], "bea's busy server was stopped"
            time.sleep(1)
        queued = wb.api("GET", f"{JOBS}/{r.json()['id']}", tokens["queue-quinn"]).json()
        assert queued["state"] == "queued"  # it waited for a GPU all that time
        assert "Stopped busy-bea's server" not in wb.hub_log()
        for job_id in (waiting, r.json()["id"]):
            wb.api("DELETE", f"{JOBS}/{job_id}", tokens["queue-quinn"])
    finally:
        wb.ensure_stopped("busy-bea")
        wb.ensure_stopped("idle-ivo")
