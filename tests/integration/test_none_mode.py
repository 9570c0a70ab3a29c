"""Isolation 'none' (what every install by an ordinary account gets, and root's when asked
for): the suite's other hub tests run with per-user accounts, this one walks the same paths
without them, end to end: a server, a job, an endpoint and its gateway, the users API, `down`.
The service then runs as the account that started the workbench and works on users' areas
directly (hubforge.owner_files.Local without an account)."""

from __future__ import annotations

import time

import pytest

from tests.models import keras_model
from tests.workbench import start_workbench

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]
CONFIG = 'c.Workbench.isolation = "none"\nc.Workbench.label_studio_python = ""\n'
API = "services/hubforge/api"


def _wait(wb, token: str, path: str, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 240
    while (record := wb.api("GET", path, token).json()).get("state") not in states:
        assert time.monotonic() < deadline, record
        time.sleep(0.5)
    return record


def test_a_workbench_without_accounts_runs_servers_jobs_and_endpoints(tmp_path):
    data = tmp_path / "wb"
    wb = start_workbench(data, config=CONFIG)
    try:
        token = wb.create_user("nina")
        assert wb.spawn("nina", token).status_code in (201, 202)
        wb.wait_ready("nina", token)

        body = {"script": "print('none-mode job ran')\n", "spec": {"name": "plain"}}
        r = wb.api("POST", f"{API}/jobs", token, json=body)
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        assert _wait(wb, token, f"{API}/jobs/{job}", ("succeeded", "failed"))["state"] == (
            "succeeded"
        )
        log = wb.api("GET", f"{API}/jobs/{job}/logs/worker-0", token).json()["text"]
        assert "none-mode job ran" in log
        # the service keeps its records in state/: there is no account of its own
        assert (data / "state" / "passwords.json").is_file()
        assert not (data / "service").exists()

        export = keras_model(data / "hdfs" / "users" / "nina" / "exports", 1, bias=2.0)
        r = wb.api(
            "POST", f"{API}/endpoints", token, json={"name": "clf", "model_dir": str(export)}
        )
        assert r.status_code == 201, r.text
        assert (data / "state" / "endpoints.json").is_file()
        gateway = "services/hubforge/endpoints/nina/clf/v1/models/clf:predict"
        r = wb.api("POST", gateway, token, json={"instances": [[1, 2, 3, 4]]})
        assert r.status_code == 200 and r.json() == {"predictions": [[12.0]]}, r.text
        listed = wb.api("GET", f"{API}/endpoints", token).json()["endpoints"]
        assert [(e["name"], e["running"], e["versions"]) for e in listed] == [("clf", True, [1])]
        assert wb.api("DELETE", f"{API}/endpoints/clf", token).status_code == 200

        admin = wb.admin_token()
        r = wb.api("POST", f"{API}/users", admin, json={"name": "otto"})
        assert r.status_code in (201, 403), r.text  # one person's laptop may refuse a second
        wb.stop_server("nina", token)
    finally:
        done = wb.down()
    assert done.returncode == 0, done.stderr
