"""`hubforge up` supervises the hub: a hub crash is a restart, a crash of `up` itself stops
the hub cleanly, and neither touches running training jobs, endpoints and schedules (a run
whose time comes while the hub is down runs, once); one workbench per data folder."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import nbformat
import psutil
import pytest

from hubforge.processes import free_port, workbench_processes
from tests import cli_record
from tests.callers import Callers, wait_for
from tests.integration.test_schedules_hub import Clock, as_json, ended_run, runs_of
from tests.workbench import hubforge, start_workbench, xdg_state

pytestmark = pytest.mark.hub
NO_LABEL_STUDIO = 'c.Workbench.label_studio_python = ""\n'
HELLO = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
LOOP = "import time\nfor i in range(100000):\n    print(i, flush=True)\n    time.sleep(0.5)\n"
ROWS = {"instances": [[1, 2, 3, 4]]}
PREDICTED = {"predictions": [[11.0]]}
GATEWAY = "services/hubforge/endpoints/sam/clf/v1/models/clf:predict"


def hub_pid(data) -> int:
    return json.loads((data / "state" / "hubforge.json").read_text())["hub_pid"]


def job_state(wb, token, job_id) -> str:
    r = wb.api("GET", f"services/hubforge/api/jobs/{job_id}", token)
    return r.json()["state"] if r.status_code == 200 else f"HTTP {r.status_code}"


def predicts(wb, token) -> bool:
    try:
        r = wb.api("POST", GATEWAY, token, json=ROWS)
    except OSError:
        return False
    return r.status_code == 200 and r.json() == {"predictions": [[11.0]]}


def proxy_process(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "configurable-http-proxy" in " ".join(proc.cmdline())
    return False


@pytest.mark.timeout(900)  # a long story on a busy 2-core machine
def test_hub_crash_and_cli_crash_keep_jobs_endpoints_and_schedules(tmp_path):
    data = tmp_path / "wb"
    clock_file = "c.Workbench.schedule_clock_file = 'schedule-clock'\n"  # moved below
    wb = start_workbench(data, base_url="/", config=NO_LABEL_STUDIO + clock_file)
    try:
        token = wb.create_user("sam")
        wb.deploy_sum_model(token, "sam")
        r = wb.api(
            "POST",
            "services/hubforge/api/jobs",
            token,
            json={"script": LOOP, "spec": {"name": "loop"}},
        )
        assert r.status_code == 201, r.text
        job_id, supervisor = r.json()["id"], r.json()["supervisor"]["pid"]
        wait_for(lambda: job_state(wb, token, job_id) == "running", what="the job to run")

        # Commands without --data-dir act on the workbench `up` started, and say so.
        env = {k: v for k, v in os.environ.items() if k != "HUBFORGE_DIR"}
        env["XDG_STATE_HOME"] = str(xdg_state(data))
        r = cli_record.run(["users", "add", "tess"], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and f"Workbench: {data}" in r.stderr, r.stderr
        assert "tess" in hubforge("users", "list", data_dir=data).stdout
        r = cli_record.run(["status"], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and f"running at {wb.url}" in r.stdout

        # The hub crashes: `up` restarts it on the same ports; the job and endpoint go on,
        # and callers of the endpoint see no failure at all (the proxy and the service are
        # `up`'s, not the hub's); a token the service has not checked yet gets a JSON 503.
        # A schedule's run time passes while the hub is down: it runs once, hub or not.
        cold = wb.create_user("cole")  # a token the service has not checked yet
        clock = Clock(wb)
        body = {"notebook": as_json(HELLO), "cron": "* * * * *"}
        r = wb.api("POST", "services/hubforge/api/schedules", token, json=body)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        crashed = hub_pid(data)
        with Callers(wb.url + GATEWAY, token, 8, ROWS, PREDICTED) as callers:
            os.kill(crashed, signal.SIGKILL)
            clock.minute_on()
            r = wb.api("POST", GATEWAY, cold, json=ROWS)
            wait_for(lambda: hub_pid(data) != crashed, what="a new hub")
            wait_for(lambda: "The hub is back" in wb.log.read_text(), 300, "the hub to come back")
        # (403 if the new hub answered already: cole may not call sam's endpoint)
        assert r.status_code in (403, 503) and "json" in r.headers["Content-Type"], r.text
        assert r.status_code == 403 or "hub is not answering" in r.json()["error"], r.text
        assert callers.answers and callers.failed() == [], callers.failed()[:5]
        assert "restarting it" in wb.log.read_text()
        assert wb.proc.poll() is None
        assert job_state(wb, token, job_id) == "running"
        assert psutil.pid_exists(supervisor)
        assert predicts(wb, token)
        assert ended_run(wb, token, sid, 1)["state"] == "succeeded"
        time.sleep(2)  # two more passes of the service: no second run of that time
        assert [r["number"] for r in runs_of(wb, token, sid)] == [1]

        # The proxy crashes: `up` starts it again with every route it had (the hub's own
        # route too), at once: callers meet a closed port for a moment, never an HTML page.
        (proxy,) = [p for p in workbench_processes(str(data)) if proxy_process(p)]
        with Callers(wb.url + GATEWAY, token, 8, ROWS, PREDICTED) as callers:
            proxy.kill()
            killed = time.monotonic()
            wait_for(lambda: callers.since_last_failure(killed) > 3, 60, "the endpoint again")
        # (a call in the moment between the new proxy's start and its routes: JSON to retry)
        retry = "404 The workbench's proxy is starting again"
        answered = [a for a in callers.failed() if a[1] != "no connection"]
        assert all(a[1].startswith(retry) for a in answered), answered[:5]
        assert callers.outage() < 10, callers.outage()
        assert wb.api("GET", "hub/api/", None).status_code == 200
        assert "The proxy exited" in wb.log.read_text()

        # One workbench per data folder: a second `up` is refused, nothing else starts.
        before = {p.pid for p in workbench_processes(str(data))}
        second = hubforge("up", "--port", str(free_port()), data_dir=data)
        assert second.returncode == 1
        assert f"Hubforge is already running on {data}" in second.stderr
        assert {p.pid for p in workbench_processes(str(data))} <= before

        # `up` itself dies (kill -9, a closed terminal): the hub stops cleanly with it.
        hub = psutil.Process(hub_pid(data))
        wb.proc.kill()
        wb.proc.wait(timeout=10)
        hub.wait(timeout=60)

        def only_endpoints_left():
            left = [" ".join(p.cmdline()) for p in workbench_processes(str(data))]
            return all("hubforge.serving.server" in c for c in left)

        wait_for(only_endpoints_left, 60, "the hub's services and proxy to stop")
        status = hubforge("status", data_dir=data)
        assert status.returncode == 1 and "not running" in status.stdout
        assert psutil.pid_exists(supervisor), "the training job survived the CLI's death"
    finally:
        if wb.proc.poll() is None:
            wb.down()

    # The next `up` finds the job still running and the endpoint still serving.
    wb = start_workbench(data, base_url="/", config=NO_LABEL_STUDIO)
    try:
        token = wb.create_user("sam")
        assert job_state(wb, token, job_id) == "running"
        assert predicts(wb, token)
    finally:
        down = wb.down()
    assert f"Stopped job(s): {job_id}" in down.stderr + wb.log.read_text()
    assert workbench_processes(str(data)) == []
