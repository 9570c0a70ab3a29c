"""Jobs through the hubforge service under faults: a running job whose job.json is damaged is
still cancelled; one user's burst of submits is limited (429 saying what to do) and never
holds up another user's calls. Real hub, service and job processes, per-user accounts when
run as root."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import psutil
import pytest
import requests

from hubforge.atomic import file_lock
from tests.integration.test_jobs_damaged_record import SLEEPER, alive, truncate, wait_for
from tests.workbench import RunningWorkbench, isolated, start_workbench

pytestmark = pytest.mark.hub
JOBS = "services/hubforge/api/jobs"
LIMIT = 8  # active jobs per user when the workbench sets no limit (DEFAULT_JOBS_PER_USER)


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> RunningWorkbench:
    wb = start_workbench(
        tmp_path_factory.mktemp("jobfaults"),
        base_url="/",
        config='c.Workbench.label_studio_python = ""\n',
    )
    yield wb
    wb.down()


def submit(wb: RunningWorkbench, token: str, name: str = "sleeper"):
    body = {"script": SLEEPER, "spec": {"name": name}}
    return wb.api("POST", JOBS, token, json=body)


def running_pids(wb: RunningWorkbench, token: str, job_id: str) -> list[int]:
    """The supervisor's and worker's pids of a job, once it runs."""

    def worker() -> int | None:
        record = wb.api("GET", f"{JOBS}/{job_id}", token).json()
        pid = record.get("replicas", {}).get("worker-0", {}).get("pid")
        return pid if record.get("state") == "running" and pid else None

    worker_pid = wait_for(worker, timeout=90, what="the job to run")
    supervisor = wb.api("GET", f"{JOBS}/{job_id}", token).json()["supervisor"]["pid"]
    return [supervisor, worker_pid]


def test_a_running_job_with_a_damaged_record_is_cancelled_through_the_service(hub):
    token = hub.create_user("dora")
    r = submit(hub, token)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    pids = running_pids(hub, token, job_id)
    truncate(hub.data_dir / "hdfs" / "users" / "dora" / "jobs" / job_id / "job.json")

    r = hub.api("GET", f"{JOBS}/{job_id}", token)
    assert r.status_code == 409 and "The job still runs" in r.json()["message"], r.text
    listed = {j["id"]: j for j in hub.api("GET", JOBS, token).json()["jobs"]}
    assert listed[job_id]["state"] == "damaged" and listed[job_id]["running"] is True

    r = hub.api("DELETE", f"{JOBS}/{job_id}", token)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="processes to exit")
    assert hub.api("GET", f"{JOBS}/{job_id}", token).json()["state"] == "cancelled"


def status_answers(wb: RunningWorkbench, token: str, seconds: float) -> list[str]:
    """What each of another user's status calls got during ``seconds``: "200", or what went
    wrong (a call held up behind the submits gets no answer while they wait)."""
    answers, deadline = [], time.monotonic() + seconds
    headers = {"Authorization": f"token {token}"}
    while time.monotonic() < deadline:
        try:
            r = requests.get(wb.url + "services/hubforge/api/status", headers=headers, timeout=30)
            answers.append(str(r.status_code))
        except requests.Timeout:
            answers.append("no answer in 30 s")
        time.sleep(0.05)
    return answers


def test_a_burst_of_submits_is_limited_and_never_holds_up_other_users(hub):
    limit = LIMIT
    token, other = hub.create_user("burst"), hub.create_user("bystander")
    first = submit(hub, token)
    assert first.status_code == 201, first.text
    assert hub.api("GET", "services/hubforge/api/status", other).status_code == 200  # warm

    with ThreadPoolExecutor(limit + 3) as pool:
        # A submit that takes seconds: another account is being made meanwhile (the lock
        # every submit takes with per-user accounts is held, as while the helper makes one).
        with file_lock(hub.state_dir / "accounts.lock") if isolated() else nullcontext():
            burst = [pool.submit(submit, hub, token) for _ in range(limit + 3)]
            meanwhile = status_answers(hub, other, 3)
            # with per-user accounts the submits wait for the lock held here: the other
            # user's calls were answered while they waited (they waited behind them before)
            waiting = isolated() and not any(f.done() for f in burst)
        answers = [f.result() for f in burst]
    assert len(meanwhile) >= 3 and set(meanwhile) == {"200"}, meanwhile
    assert waiting or not isolated(), "the submits did not wait for the lock"
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * (limit - 1) + [429] * 4, [r.text for r in answers]
    refused = next(r.json()["message"] for r in answers if r.status_code == 429)
    assert f"(limit {limit})" in refused and "hubforge job cancel ID" in refused, refused
    assert "max_jobs_per_user" in refused

    r = submit(hub, token)
    assert r.status_code == 429, r.text
    assert f"You have {limit} jobs running (limit {limit})" in r.json()["message"]
    mine = [j for j in hub.api("GET", JOBS, token).json()["jobs"] if j["state"] == "running"]
    assert 0 < len(mine) <= limit
    assert hub.api("DELETE", f"{JOBS}/{mine[0]['id']}", token).status_code == 200
    again = submit(hub, token)
    assert again.status_code == 201, again.text  # one ended: one more may start
    assert submit(hub, other).status_code == 201  # the limit is per user


def test_down_stops_every_running_job(tmp_path):
    """Nothing is left running: `down` stops the jobs of a burst (its own workbench: the
    tests above share one and run in any order)."""
    wb = start_workbench(
        tmp_path / "wb", base_url="/", config='c.Workbench.label_studio_python = ""\n'
    )
    users = Path(wb.data_dir / "hdfs" / "users")

    def supervisors() -> list[psutil.Process]:
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if "hubforge.jobs.supervisor" in (p.info["cmdline"] or [])
            and str(users) in " ".join(p.info["cmdline"])
        ]

    try:
        token = wb.create_user("dana")
        for _ in range(3):
            assert submit(wb, token).status_code == 201
        started = wait_for(lambda: len(supervisors()) == 3 and supervisors(), what="3 jobs")
    finally:
        wb.down()
    wait_for(lambda: not any(alive(p.pid) for p in started), timeout=60, what="jobs to stop")
