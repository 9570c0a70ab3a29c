"""Jobs through the hub: the server extension, the hubforge service, GPUs and isolation."""

from __future__ import annotations

import json
import re
import time

import nbformat
import pytest

from hubforge import private_proc
from tests.callers import wait_for
from tests.cleanup import leave_nothing_running
from tests.notebooks import training_notebook
from tests.workbench import isolated

pytestmark = pytest.mark.hub


def put_notebook(workbench, user, token, tmp_path, **kwargs):
    nb = json.loads(training_notebook(tmp_path / "train.ipynb", **kwargs).read_text())
    r = workbench.api(
        "PUT",
        f"user/{user}/api/contents/train.ipynb",
        token,
        json={"type": "notebook", "content": nbformat.from_dict(nb)},
    )
    assert r.status_code in (200, 201), r.text


def wait_state(workbench, path, token, states, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = workbench.api("GET", path, token).json()
        if record.get("state") in states:
            return record
        time.sleep(0.5)
    raise AssertionError(f"{path} never reached {states}: {record}")


@pytest.fixture(scope="module")
def trainer(workbench, tmp_path_factory):
    token = workbench.create_user("trainer")
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    assert workbench.spawn("trainer", token, profile="gpu-1").status_code in (201, 202)
    put_notebook(workbench, "trainer", token, tmp_path_factory.mktemp("nb"))
    yield token
    workbench.ensure_stopped("trainer")


def test_submit_from_the_server_runs_two_workers(workbench, trainer):
    r = workbench.api(
        "POST",
        "user/trainer/hubforge/api/jobs",
        trainer,
        json={"path": "train.ipynb", "workers": 2, "params": {"epochs": 2}},
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["owner"] == "trainer" and job["spec"]["workers"] == 2
    record = wait_state(
        workbench, f"user/trainer/hubforge/api/jobs/{job['id']}", trainer, {"succeeded", "failed"}
    )
    assert record["state"] == "succeeded", record
    job_dir = workbench.data_dir / "hdfs" / "users" / "trainer" / "jobs" / job["id"]
    assert (job_dir / "model" / "saved_model.pb").is_file()
    progress = workbench.api(
        "GET", f"user/trainer/hubforge/api/jobs/{job['id']}/progress", trainer
    ).json()
    assert [h["epoch"] for h in progress["history"]] == [0, 1]
    logs = workbench.api(
        "GET", f"user/trainer/hubforge/api/jobs/{job['id']}/logs/worker-1", trainer
    ).json()
    assert "Epoch 2/2" in logs["text"] and logs["offset"] > 0
    listed = workbench.api("GET", "services/hubforge/api/jobs", trainer).json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]


def test_gpu_job_gets_devices_and_gives_them_back(workbench, trainer):
    admin = workbench.admin_token()
    r = workbench.api(
        "POST",
        "user/trainer/hubforge/api/jobs",
        trainer,
        json={"path": "train.ipynb", "gpus_per_worker": 1, "params": {"epochs": 30, "delay": 0.1}},
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert len(r.json()["spec"]["devices"]) == 1
    gpus = workbench.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
    assert gpus["allocations"][f"job/trainer/{job_id}"] == r.json()["spec"]["devices"]
    assert gpus["free"] == 0  # one for the server's profile, one for the job
    # the owner sees their job's GPUs too (and nobody else's)
    mine = workbench.api("GET", "services/hubforge/api/status", trainer).json()["gpus"]
    assert mine["allocations"] == {k: v for k, v in gpus["allocations"].items() if "trainer" in k}
    assert f"job/trainer/{job_id}" in mine["allocations"]

    # no GPU is free: the next two are accepted and wait in the queue, in order (#33)
    waiting = []
    for _ in range(2):
        r = workbench.api(
            "POST",
            "user/trainer/hubforge/api/jobs",
            trainer,
            json={"path": "train.ipynb", "gpus_per_worker": 1, "params": {"epochs": 1}},
        )
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "queued" and r.json()["spec"]["devices"] == []
        waiting.append(r.json()["id"])
    first = workbench.api("GET", f"user/trainer/hubforge/api/jobs/{waiting[0]}", trainer).json()
    assert first["queue"] == {"position": 1, "reason": "waiting for 1 GPU (0 free); yours is next"}
    listed = workbench.api("GET", "services/hubforge/api/jobs", trainer).json()["jobs"]
    second = next(j for j in listed if j["id"] == waiting[1])
    assert second["queue"]["position"] == 2 and "1 job ahead, all yours" in second["reason"]

    # admins see the queue (status, the hub home's team view); a user sees their own part
    queue = workbench.api("GET", "services/hubforge/api/status", admin).json()["queue"]
    assert [(q["position"], q["id"], q["owner"], q["gpus"]) for q in queue] == [
        (1, waiting[0], "trainer", 1),
        (2, waiting[1], "trainer", 1),
    ]
    team = workbench.api("GET", "services/hubforge/api/team", admin).json()
    assert [q["id"] for q in team["queue"]] == waiting
    signed_in = workbench.login("admin", workbench.admin_password)
    page = signed_in.get(workbench.url + "hub/home", timeout=60).text  # the hub home's table
    assert re.findall(r'class="hubforge-queued" data-job="([^"]+)"', page) == waiting, page
    assert workbench.api("GET", "services/hubforge/api/team", trainer).status_code == 403
    mine = workbench.api("GET", "services/hubforge/api/status", trainer).json()["queue"]
    assert [(q["position"], q["id"], q["reason"]) for q in mine] == [
        (q["position"], q["id"], q["reason"]) for q in queue
    ]
    assert all(q["waiting_s"] >= 0 for q in mine)
    other = workbench.create_user("queue-peer")
    assert workbench.api("GET", "services/hubforge/api/status", other).json()["queue"] == []
    r = workbench.api("DELETE", f"services/hubforge/api/jobs/{waiting[1]}", other)
    assert r.status_code == 404  # another user cannot take a place in the queue away

    # a waiting job is cancelled: it never starts
    r = workbench.api("DELETE", f"user/trainer/hubforge/api/jobs/{waiting[1]}", trainer)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    # the running one is cancelled: its GPU goes to the first waiting job, by itself
    r = workbench.api("DELETE", f"user/trainer/hubforge/api/jobs/{job_id}", trainer)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    devices = r.json()["spec"]["devices"]

    def started() -> dict | None:
        job = workbench.api("GET", f"user/trainer/hubforge/api/jobs/{waiting[0]}", trainer)
        return job.json() if job.json()["state"] != "queued" else None

    job = wait_for(started, 30, "the queued job to start")
    assert job["spec"]["devices"] == devices and "queue" not in job
    gpus = workbench.api("GET", "services/hubforge/api/status", admin).json()["gpus"]
    assert f"job/trainer/{job_id}" not in gpus["allocations"]
    assert gpus["allocations"][f"job/trainer/{waiting[0]}"] == devices
    workbench.api("DELETE", f"user/trainer/hubforge/api/jobs/{waiting[0]}", trainer)
    record = workbench.api("GET", f"user/trainer/hubforge/api/jobs/{waiting[1]}", trainer)
    assert record.json()["state"] == "cancelled"


def test_bad_submissions(workbench, trainer):
    api = "user/trainer/hubforge/api/jobs"
    cases = [
        ({"path": "train.ipynb", "workers": 0}, 400, "workers=0"),
        ({"path": "train.ipynb", "gpus_per_worker": 2}, 400, "your profile allows at most 1"),
        ({"path": "train.ipynb", "params": {"lr": 1}}, 400, "Unknown parameter(s) lr"),
        ({"path": "missing.ipynb"}, 400, "does not exist"),
        ({"path": "../../etc/passwd.ipynb"}, 400, "outside your home folder"),
        ({"path": "train.ipynb", "gpu": 1}, 400, "Unknown field(s) ['gpu']"),
        ({"workers": 1}, 400, 'Send {"path"'),
        ({"path": "train.ipynb", "priority": "urgent"}, 400, "use one of batch, interactive"),
        ({"path": "train.ipynb", "priority": "oncall"}, 403, "'oncall' is not yours to use"),
    ]
    for body, status, message in cases:
        r = workbench.api("POST", api, trainer, json=body)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["message"], (body, r.text)
    r = workbench.api("POST", api, trainer, data="{oops")
    assert r.status_code == 400
    # The service checks what it is sent, too.
    r = workbench.api(
        "POST",
        "services/hubforge/api/jobs",
        trainer,
        json={"spec": {"name": "x", "workers": 99}, "script": "print(1)"},
    )
    assert r.status_code == 400 and "workers=99: choose between 1 and 8" in r.json()["message"]
    r = workbench.api("POST", "services/hubforge/api/jobs", trainer, json={"spec": {"name": "x"}})
    assert r.status_code == 400 and "'script'" in r.json()["message"]
    # the one the class names may use it
    olga = workbench.create_user("oncall-olga")
    page = {"spec": {"name": "page", "priority": "oncall"}, "script": "print('paged')\n"}
    r = workbench.api("POST", "services/hubforge/api/jobs", olga, json=page)
    assert r.status_code == 201 and r.json()["spec"]["priority"] == "oncall", r.text


# what a job's worker sees of the machine's processes: the accounts that own them
LOOK_AT_PROC = """
import os
owners = set()
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            owners.add(os.stat(f"/proc/{p}").st_uid)
        except OSError:
            pass
print("mine", os.getuid(), "sees processes of", sorted(owners))
"""


def test_another_user_can_neither_see_nor_cancel(workbench, trainer):
    r = workbench.api(  # a job of the trainer's own (this test runs alone, in any order)
        "POST",
        "services/hubforge/api/jobs",
        trainer,
        json={"script": LOOK_AT_PROC, "spec": {"name": "mine"}},
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    done = wait_state(
        workbench, f"services/hubforge/api/jobs/{job_id}", trainer, {"succeeded", "failed"}
    )
    assert done["state"] == "succeeded", done
    log = workbench.api("GET", f"services/hubforge/api/jobs/{job_id}/logs/worker-0", trainer)
    uid, seen = re.search(
        r"mine (\d+) sees processes of \[([\d, ]*)\]", log.json()["text"]
    ).groups()
    if isolated() and private_proc.probe():  # the job, started as trainer, sees only theirs
        assert {int(u) for u in seen.split(",")} == {int(uid)}, (uid, seen)
    snoop = workbench.create_user("snoop")
    assert workbench.api("GET", "services/hubforge/api/jobs", snoop).json()["jobs"] == []
    for method, path in [
        ("GET", f"services/hubforge/api/jobs/{job_id}"),
        ("DELETE", f"services/hubforge/api/jobs/{job_id}"),
        ("GET", f"services/hubforge/api/jobs/{job_id}/logs/worker-0"),
    ]:
        r = workbench.api(method, path, snoop)
        assert r.status_code == 404 and "No job" in r.json()["message"], (method, path, r.text)
    r = workbench.api(
        "GET", f"user/trainer/hubforge/api/jobs/{job_id}", snoop, allow_redirects=False
    )
    assert r.status_code == 403
    assert workbench.api("GET", "services/hubforge/api/jobs").status_code == 403


def test_job_outlives_the_users_server(workbench, tmp_path):
    token = workbench.create_user("runner")
    try:
        assert workbench.spawn("runner", token).status_code in (201, 202)
        put_notebook(workbench, "runner", token, tmp_path)
        r = workbench.api(
            "POST",
            "user/runner/hubforge/api/jobs",
            token,
            json={"path": "train.ipynb", "params": {"epochs": 200, "delay": 0.1}},
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        wait_state(workbench, f"services/hubforge/api/jobs/{job_id}", token, {"running"})

        workbench.stop_server("runner", token)
        # not a pause and a look: the job goes on training after the server is gone (its
        # progress moves on past where it was once the server had stopped)
        progress = f"services/hubforge/api/jobs/{job_id}/progress"

        def where() -> tuple[int, int]:
            p = workbench.api("GET", progress, token).json()
            return (p.get("epoch") or 0, p.get("step") or 0)

        stopped_at = where()
        deadline = time.monotonic() + 120
        while where() <= stopped_at:
            assert time.monotonic() < deadline, f"the job made no progress past {stopped_at}"
            time.sleep(0.5)
        record = workbench.api("GET", f"services/hubforge/api/jobs/{job_id}", token).json()
        assert record["state"] == "running"

        assert workbench.spawn("runner", token).status_code in (201, 202)
        listed = workbench.api("GET", "user/runner/hubforge/api/jobs", token).json()["jobs"]
        assert [j["state"] for j in listed if j["id"] == job_id] == ["running"]
        r = workbench.api("DELETE", f"user/runner/hubforge/api/jobs/{job_id}", token)
        assert r.json()["state"] == "cancelled"
        workbench.stop_server("runner", token)
    finally:
        leave_nothing_running(workbench, "runner", token)


def test_cookie_callers_need_the_xsrf_token(workbench):
    admin = workbench.admin_token()
    password = workbench.api(
        "POST", "services/hubforge/api/users", admin, json={"name": "xena"}
    ).json()["password"]
    token = workbench.create_user("xena")
    try:
        assert workbench.spawn("xena", token).status_code in (201, 202)
        browser = workbench.login("xena", password)
        # Visiting the server logs the browser in to it (OAuth with the hub): cookies only.
        assert browser.get(workbench.url + "user/xena/lab", timeout=60).status_code == 200
        jobs = workbench.url + "user/xena/hubforge/api/jobs"
        assert browser.get(jobs, timeout=30).status_code == 200
        r = browser.post(jobs, json={"path": "none.ipynb"}, timeout=30)
        assert r.status_code == 403  # a forged cross-site POST carries no XSRF token
        xsrf = browser.cookies.get("_xsrf", path="/hub@forge%20space/user/xena/")
        r = browser.post(
            jobs, json={"path": "none.ipynb"}, headers={"X-XSRFToken": xsrf}, timeout=30
        )
        assert r.status_code == 400 and "does not exist" in r.json()["message"]
    finally:
        workbench.ensure_stopped("xena")
