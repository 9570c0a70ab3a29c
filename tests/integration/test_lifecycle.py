"""Stop and restart: no orphans, and users, files and state survive."""

from __future__ import annotations

import signal

import psutil
import pytest

from hubforge.processes import workbench_processes
from tests.workbench import hubforge, start_workbench

pytestmark = pytest.mark.hub


def kernel_processes(data_dir):
    return [
        p
        for p in workbench_processes(str(data_dir))
        if "ipykernel_launcher" in " ".join(p.cmdline())
    ]


def test_stop_leaves_nothing_and_restart_keeps_everything(tmp_path):
    data = tmp_path / "wb"
    wb = start_workbench(data, base_url="/")
    try:
        r = hubforge(
            "users", "add", "dora", "--password-stdin", data_dir=data, input="dora-secret-1\n"
        )
        assert r.returncode == 0, r.stderr
        session = wb.login("dora", "dora-secret-1")
        xsrf = {"X-XSRFToken": session.cookies.get("_xsrf")}
        token = session.post(
            wb.url + "hub/api/users/dora/tokens", json={"note": "t"}, headers=xsrf, timeout=30
        ).json()["token"]
        assert wb.spawn("dora", token).status_code in (201, 202)
        r = wb.api(
            "PUT",
            "user/dora/api/contents/notes.txt",
            token,
            json={"type": "file", "format": "text", "content": "keep me"},
        )
        assert r.status_code in (200, 201), r.text
        r = wb.api("POST", "user/dora/api/kernels", token, json={"name": "python3"})
        assert r.status_code == 201, r.text
        (kernel,) = kernel_processes(data)
        assert kernel.environ()["TF_USE_LEGACY_KERAS"] == "1"
        assert kernel.environ()["HUBFORGE_DATA"] == str(data / "hdfs")

        status = hubforge("status", data_dir=data)
        assert status.returncode == 0 and wb.url in status.stdout
        assert workbench_processes(str(data)), "hub, proxy, service and server are marked"
    finally:
        down = wb.down()
    assert down.returncode == 0, down.stderr
    assert "Hubforge stopped." in down.stdout
    assert workbench_processes(str(data)) == []
    assert not psutil.pid_exists(kernel.pid) or kernel.status() == psutil.STATUS_ZOMBIE

    # Restart on the same data folder: no new admin, the same users, the same files.
    wb = start_workbench(data, base_url="/")
    try:
        assert "Created the first admin" not in wb.log.read_text().split("hubforge up")[-1][-2000:]
        session = wb.login("dora", "dora-secret-1")
        xsrf = {"X-XSRFToken": session.cookies.get("_xsrf")}
        token = session.post(
            wb.url + "hub/api/users/dora/tokens", json={"note": "t"}, headers=xsrf, timeout=30
        ).json()["token"]
        assert wb.spawn("dora", token).status_code in (201, 202)
        r = wb.api("GET", "user/dora/api/contents/notes.txt", token)
        assert r.status_code == 200 and r.json()["content"] == "keep me"
    finally:
        # Ctrl-C in the terminal: SIGINT to `hubforge up`.
        wb.proc.send_signal(signal.SIGINT)
        assert wb.proc.wait(timeout=90) == 0
    assert workbench_processes(str(data)) == []
