"""Stop and restart: no orphans, and users, files and state survive."""

from __future__ import annotations

import json
import re
import signal
import time

import psutil
import pytest

from hubforge.processes import workbench_processes
from tests.notebooks import training_notebook
from tests.workbench import hubforge, start_workbench

pytestmark = pytest.mark.hub


def kernel_processes(data_dir):
    return [
        p
        for p in workbench_processes(str(data_dir))
        # ipykernel's launcher, or Hubforge's around it (kernels over private Unix sockets)
        if any(
            m in " ".join(p.cmdline()) for m in ("ipykernel_launcher", "hubforge.kernel_launcher")
        )
    ]


JOBS = "services/hubforge/api/jobs"
ONE_GPU = 'c.Workbench.gpus = ["0"]\n'


def gpu_job(name: str, seconds: int) -> dict:
    script = f"import time\ntime.sleep({seconds})\n"
    return {"spec": {"name": name, "gpus_per_worker": 1}, "script": script}


GATEWAY = "services/hubforge/endpoints/kay/clf/v1/models/clf:predict"
ROWS = {"instances": [[1, 2, 3, 4]]}


@pytest.mark.timeout(600)
def test_a_restart_keeps_users_files_jobs_the_queue_and_endpoints_and_stops_leave_nothing(
    tmp_path,
):
    """One workbench's life (one story: each start costs a hub, a proxy, the service and
    Label Studio). The first admin's password is shown once; users, their files, running jobs
    (`down --keep-jobs`) and the queue's order survive a restart; endpoints stop with the
    workbench and come back by themselves (503 'is starting' meanwhile); the terminal shows
    only Hubforge's lines; Ctrl-C stops every job and leaves no process."""
    data = tmp_path / "wb"
    wb = start_workbench(data, base_url="/", config=ONE_GPU)
    try:
        dora = first_day(wb, data)
        jobs = running_jobs_and_an_endpoint(wb, tmp_path, dora, wb.create_user("kay"))
    finally:
        down = hubforge("down", "--keep-jobs", data_dir=data)
        wb.proc.wait(timeout=60)
    assert down.returncode == 0 and f"Hubforge stopped ({data})." in down.stdout, down.stderr
    assert workbench_processes(str(data)) == [], "down stops endpoints, even with --keep-jobs"
    kernel = jobs["kernel"]
    assert not psutil.pid_exists(kernel.pid) or kernel.status() == psutil.STATUS_ZOMBIE
    assert psutil.pid_exists(jobs["supervisor"]), "the job kept running through the restart"
    # a clean start, a day's kind of use and a stop: the terminal has no traceback and no error
    # line, only Hubforge's own lines (the hub's log went to state/jupyterhub.log)
    terminal = wb.log.read_text()
    assert "Traceback" not in terminal and not re.search(r"^\[[EC] |ERROR", terminal, re.M), (
        terminal
    )
    assert "JupyterHub app:" not in terminal and "ConfigProxy" not in terminal, terminal[-3000:]
    assert len(terminal.splitlines()) < 40, terminal
    assert "JupyterHub app:" in (data / "state" / "jupyterhub.log").read_text()

    # Restart on the same data folder: no new admin, the same users, files, jobs and queue.
    wb = start_workbench(data, base_url="/", config=ONE_GPU)
    try:
        # up.log holds this start only: no second first admin on a restart
        assert "Starting Hubforge on" in wb.log.read_text()
        assert "Created the first admin" not in wb.log.read_text()
        assert "password:" not in wb.log.read_text()
        token = wb.login_token("dora", "dora-secret-1")
        assert wb.spawn("dora", token).status_code in (201, 202)
        r = wb.api("GET", "user/dora/api/contents/notes.txt", token)
        assert r.status_code == 200 and r.json()["content"] == "keep me"
        the_jobs_and_the_endpoint_are_back(wb, jobs)
    finally:
        # Ctrl-C in the terminal: SIGINT to `hubforge up`.
        wb.proc.send_signal(signal.SIGINT)
        assert wb.proc.wait(timeout=90) == 0
    assert workbench_processes(str(data)) == []
    job_id, supervisor = jobs["train"], jobs["supervisor"]
    assert f"Stopped job(s): {job_id}" in wb.log.read_text()
    record = json.loads(
        (data / "hdfs" / "users" / "kay" / "jobs" / job_id / "job.json").read_text()
    )
    assert record["state"] == "cancelled"
    assert "stopped with the workbench" in record["reason"]
    assert not psutil.pid_exists(supervisor) or psutil.Process(supervisor).status() == "zombie"


def first_day(wb, data) -> str:
    """The first admin's box; dora added with the CLI, her file and a kernel."""
    # the first admin's password, once, in a box after start-up, with how to change it
    log = wb.log.read_text()
    box = log[log.index("| Created the first admin") :].split("\n+")[0]
    assert f"password: {wb.admin_password}" in box
    assert "hubforge users reset-password admin" in box
    assert log.index("| Created the first admin") > log.rindex("Starting Hubforge on")
    r = hubforge("users", "add", "dora", "--password-stdin", data_dir=data, input="dora-secret-1\n")
    assert r.returncode == 0, r.stderr
    token = wb.login_token("dora", "dora-secret-1")
    assert wb.spawn("dora", token).status_code in (201, 202)
    r = wb.api(
        "PUT",
        "user/dora/api/contents/notes.txt",
        token,
        json={"type": "file", "format": "text", "content": "keep me"},
    )
    assert r.status_code in (200, 201), r.text
    status = hubforge("status", data_dir=data)
    assert status.returncode == 0 and wb.url in status.stdout
    assert workbench_processes(str(data)), "hub, proxy, service and server are marked"
    return token


def running_jobs_and_an_endpoint(wb, tmp_path, dora: str, token: str) -> dict:
    """kay's training job running (it holds the one GPU), kim's and kay's next waiting in
    the queue, kay's endpoint answering, dora's kernel; what the rest of the story checks."""
    r = wb.api("POST", "user/dora/api/kernels", dora, json={"name": "python3"})
    assert r.status_code == 201, r.text
    (kernel,) = kernel_processes(wb.data_dir)
    assert kernel.environ()["TF_USE_LEGACY_KERAS"] == "1"
    assert kernel.environ()["HUBFORGE_DATA"] == str(wb.data_dir / "hdfs")
    assert wb.spawn("kay", token).status_code in (201, 202)
    nb = json.loads(training_notebook(tmp_path / "train.ipynb").read_text())
    r = wb.api(
        "PUT", "user/kay/api/contents/train.ipynb", token, json={"type": "notebook", "content": nb}
    )
    assert r.status_code in (200, 201), r.text
    r = wb.api(
        "POST",
        "user/kay/hubforge/api/jobs",
        token,
        json={"path": "train.ipynb", "params": {"epochs": 500, "delay": 0.1}},
    )
    assert r.status_code == 201, r.text
    job_id, supervisor = r.json()["id"], r.json()["supervisor"]["pid"]
    # the one GPU: kay's job holds it, kim's and then kay's next wait in the queue
    holder = wb.api("POST", JOBS, token, json=gpu_job("holds", 600)).json()
    assert holder["state"] in ("pending", "running"), holder
    kim = wb.create_user("kim")
    waiting = [wb.api("POST", JOBS, t, json=gpu_job("waits", 1)).json() for t in (kim, token)]
    assert [w["state"] for w in waiting] == ["queued", "queued"], waiting
    wb.deploy_sum_model(token, "kay")
    assert wb.api("POST", GATEWAY, token, json=ROWS).json() == {"predictions": [[11.0]]}
    # (a busy machine can take a while to start TensorFlow: the story is about a job that
    # runs, so the restart comes once it does)
    deadline = time.monotonic() + 120
    while (state := wb.api("GET", f"{JOBS}/{job_id}", token).json()["state"]) == "pending":
        assert time.monotonic() < deadline, "kay's training job never started running"
        time.sleep(0.5)
    assert state == "running", state
    return {
        "train": job_id,
        "supervisor": supervisor,
        "holder": holder["id"],
        "waiting": [w["id"] for w in waiting],
        "kernel": kernel,
    }


def the_jobs_and_the_endpoint_are_back(wb, jobs: dict) -> None:
    token, kim = wb.create_user("kay"), wb.create_user("kim")
    listed = wb.api("GET", JOBS, token).json()["jobs"]
    states = {j["id"]: j["state"] for j in listed}
    assert states == {
        jobs["train"]: "running",
        jobs["holder"]: "running",
        jobs["waiting"][1]: "queued",
    }
    places = [
        wb.api("GET", f"{JOBS}/{job_id}", t).json()["queue"]["position"]
        for job_id, t in zip(jobs["waiting"], (kim, token), strict=True)
    ]
    assert places == [1, 2]  # the same order after the restart
    # the GPU comes free: kim's job, first in the queue, gets it by itself
    assert wb.api("DELETE", f"{JOBS}/{jobs['holder']}", token).status_code == 200
    deadline = time.monotonic() + 60
    while wb.api("GET", f"{JOBS}/{jobs['waiting'][0]}", kim).json()["state"] == "queued":
        assert time.monotonic() < deadline, "kim's queued job did not start"
        time.sleep(0.5)
    deadline = time.monotonic() + 90
    while (r := wb.api("POST", GATEWAY, token, json=ROWS)).status_code == 503:
        assert "is starting" in r.json()["error"] and r.headers["Retry-After"] == "2"
        assert time.monotonic() < deadline, "the endpoint never came back"
        time.sleep(0.5)
    assert r.json() == {"predictions": [[11.0]]}
