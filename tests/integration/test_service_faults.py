"""The hubforge service under faults: killed (the gateway is back in seconds, a deploy it died
in leaves nothing running), slow work (a cancel never freezes other users' calls), a full
disk (507 naming the path, everything works again as soon as there is space)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from hubforge.processes import MARKER
from tests.callers import wait_for
from tests.integration.test_schedules_hub import (
    GREETING,
    SCHEDULES,
    Clock,
    as_json,
    ended_run,
    runs_of,
)
from tests.models import keras_model
from tests.workbench import start_workbench

pytestmark = pytest.mark.hub
ROWS = {"instances": [[1, 2, 3, 4]]}
# a job whose worker ignores SIGTERM: its cancel waits the supervisor's 10 s grace
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True:\n    print('working', flush=True)\n    time.sleep(0.5)\n"
)
TMPFS_MB = 400


def fill(filler: Path) -> None:
    """Write ``filler`` until the disk is full (unbuffered: closing it writes nothing more,
    so nothing raises after the disk is full)."""
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A folder on a tmpfs of its own (the data folder of the workbench): it can be filled
    without filling the machine's disk. Without root, a plain folder (disk-full tests skip)."""
    folder = tmp_path_factory.mktemp("small-disk")
    mounted = False
    if os.geteuid() == 0:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(folder)],
            capture_output=True,
        )
        mounted = r.returncode == 0
    yield folder, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def wb(small_disk):
    folder, _ = small_disk
    config = 'c.Workbench.label_studio_python = ""\n'
    config += "c.Workbench.schedule_clock_file = 'schedule-clock'\n"  # moved by the tests
    wb = start_workbench(folder / "wb", base_url="/", config=config)
    yield wb
    wb.down()


@pytest.fixture(scope="module")
def user(wb):
    token = wb.create_user("fay")
    export = keras_model(wb.data_dir / "hdfs" / "users" / "fay" / "exports", 1, bias=1.0)
    r = wb.api(
        "POST",
        "services/hubforge/api/endpoints",
        token,
        json=dict(name="clf", model_dir=str(export)),
    )
    assert r.status_code == 201, r.text
    return token


def marked(wb, *words: str) -> list[psutil.Process]:
    """This workbench's processes whose command line holds every one of ``words`` (not the
    keepers that restart them)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "hubforge.keeper" in cmd:
            continue
        if all(any(w in part for part in cmd) for w in words):
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARKER) == str(wb.data_dir):
                    found.append(proc)
    return found


def service_app(wb) -> psutil.Process:
    (app,) = marked(wb, "hubforge.service.app")
    return app


def endpoint_processes(wb, name: str) -> list[psutil.Process]:
    return marked(wb, "hubforge.serving.server", name)


def predict(wb, token, answers: list | None = None) -> int:
    """The gateway's status for one call (200 only with the right prediction); non-200
    answers are added to ``answers``."""
    gateway = "services/hubforge/endpoints/fay/clf/v1/models/clf:predict"
    try:
        r = wb.api("POST", gateway, token, json=ROWS)
    except OSError as e:
        if answers is not None:
            answers.append(repr(e))
        return 0
    if r.status_code == 200:
        assert r.json() == {"predictions": [[11.0]]}
    elif answers is not None:
        answers.append(f"{r.status_code} {r.text[:300]}")
    return r.status_code


def test_a_killed_service_is_back_in_seconds_and_loses_and_doubles_no_scheduled_run(wb, user):
    assert predict(wb, user) == 200
    clock = Clock(wb)  # a schedule every minute, run once before the kill
    body = {"notebook": as_json(GREETING), "cron": "* * * * *", "missed": "once"}
    r = wb.api("POST", SCHEDULES, user, json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    clock.minute_on()
    assert ended_run(wb, user, sid, 1)["state"] == "succeeded"

    killed = service_app(wb)
    killed.kill()
    clock.minute_on()  # two run times pass while the service is down
    clock.minute_on()
    # back by itself: how fast is a benchmark's figure (tests/bench), not this test's
    wait_for(lambda: predict(wb, user) == 200, 120, "the gateway to answer again")
    assert service_app(wb).pid != killed.pid
    assert "-m hubforge.service.app exited with -9; starting it again" in wb.log.read_text()
    second = ended_run(wb, user, sid, 2)  # the newest missed time, once
    assert second["state"] == "succeeded" and second["skipped_before"] == 1, second
    time.sleep(3)  # three more passes: nothing else starts
    assert [r["number"] for r in runs_of(wb, user, sid)] == [1, 2]
    jobs = wb.api("GET", "services/hubforge/api/jobs", user).json()["jobs"]
    assert sorted(j["id"] for j in jobs if j["id"].startswith(sid)) == [f"{sid}-r1", f"{sid}-r2"]
    assert wb.api("DELETE", f"{SCHEDULES}/{sid}", user).status_code == 204


def test_a_deploy_the_service_died_in_leaves_no_endpoint_process(wb, user):
    export = keras_model(wb.data_dir / "hdfs" / "users" / "fay" / "exports", 2, bias=2.0)
    body = {"name": "half", "model_dir": str(export)}
    answers = []
    deploy = threading.Thread(
        target=lambda: answers.append(
            wb.api("POST", "services/hubforge/api/endpoints", user, json=body).status_code
        )
    )
    deploy.start()
    wait_for(lambda: endpoint_processes(wb, "half"), 60, "the deploy's endpoint process")
    service_app(wb).kill()  # mid-deploy: the version is still loading
    deploy.join(timeout=120)
    assert answers and answers[0] != 201
    wait_for(lambda: not endpoint_processes(wb, "half"), 60, "the orphan to be stopped")
    listed = wb.api("GET", "services/hubforge/api/endpoints", user).json()["endpoints"]
    assert [e["name"] for e in listed] == ["clf"]


def test_cancelling_a_slow_job_never_freezes_other_calls(wb, user):
    other = wb.create_user("gus")
    r = wb.api(
        "POST",
        "services/hubforge/api/jobs",
        user,
        json={"script": STUBBORN, "spec": {"name": "stubborn"}},
    )
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    wait_for(
        lambda: (
            wb.api("GET", f"services/hubforge/api/jobs/{job}", user).json()["state"] == "running"
        ),
        what="the job to run",
    )
    done = []
    cancel = threading.Thread(
        target=lambda: done.append(wb.api("DELETE", f"services/hubforge/api/jobs/{job}", user))
    )
    started = time.monotonic()
    cancel.start()
    # another user's calls answered while the cancel still waits (a frozen service would
    # answer none of them before the cancel's own answer)
    answered_meanwhile = 0
    while not done:
        assert wb.api("GET", "services/hubforge/api/status", other).status_code == 200
        answered_meanwhile += not done
        time.sleep(0.05)
    took = time.monotonic() - started
    assert done[0].status_code == 200 and done[0].json()["state"] == "cancelled"
    # a lower bound: a busy machine makes the cancel slower, never faster than the grace
    assert took > 8, "the worker ignored SIGTERM: the cancel waited for the grace period"
    assert answered_meanwhile >= 3, f"{answered_meanwhile} calls answered during the cancel"


def make_the_proxy_log(wb, proxy: psutil.Process) -> set[int]:
    """Make configurable-http-proxy write log lines (a route added, requests to a target that
    is not listening, the route removed), as it does when a server starts or stops, more
    than the last page of a log file holds; returns the statuses the requests got."""
    cmd = proxy.cmdline()
    api = f"http://127.0.0.1:{cmd[cmd.index('--api-port') + 1]}/api/routes/disk-full-probe"
    auth = {"Authorization": f"token {proxy.environ()['CONFIGPROXY_AUTH_TOKEN']}"}
    requests.post(api, json={"target": "http://127.0.0.1:9"}, headers=auth, timeout=10)
    try:
        return {wb.api("GET", f"disk-full-probe/{'x' * 100}/{i}").status_code for i in range(40)}
    finally:
        requests.delete(api, headers=auth, timeout=10)


def test_disk_full_answers_507_and_recovers_at_once(wb, user, small_disk):
    if not small_disk[1]:
        pytest.skip("filling a disk safely needs a tmpfs of its own, which needs root")
    filler = wb.data_dir / "filler"
    export = wb.data_dir / "hdfs" / "users" / "fay" / "exports" / "1"
    cold = wb.create_user("cole")  # a token neither the hub nor the service saw in use yet
    try:
        fill(filler)
        # token checks do not need the disk: the cold token is who it says (it got 403)
        r = wb.api("GET", "services/hubforge/api/status", cold)
        assert r.status_code == 200 and r.json()["identity"]["name"] == "cole", r.text
        r = wb.api(
            "POST",
            "services/hubforge/api/jobs",
            user,
            json={"script": "print(1)\n", "spec": {"name": "full"}},
        )
        assert r.status_code == 507 and "The disk is full" in r.json()["message"], r.text
        r = wb.api(
            "POST",
            "services/hubforge/api/endpoints",
            user,
            json=dict(name="clf", model_dir=str(export)),
        )
        assert r.status_code == 507 and "models/clf" in r.json()["message"], r.text
        # serving goes on while the disk is full, also after the proxy wrote to its log (it
        # died of that once: an idle CI run saw a 503 here)
        (proxy,) = marked(wb, "configurable-http-proxy")
        assert make_the_proxy_log(wb, proxy) == {503}, "the probe's target is not listening"
        answers: list[str] = []
        for _ in range(3):
            assert predict(wb, user, answers) == 200, f"serving on a full disk: {answers}"
            time.sleep(1)
        assert proxy.is_running(), "the proxy lives on when it cannot write its log"
    finally:
        filler.unlink(missing_ok=True)
    status = wb.api("GET", "services/hubforge/api/status", user)
    assert status.status_code == 200, "tokens work again as soon as there is space"
    r = wb.api(
        "POST",
        "services/hubforge/api/jobs",
        user,
        json={"script": "print('room again')\n", "spec": {"name": "room"}},
    )
    assert r.status_code == 201, r.text
    jobs = wb.api("GET", "services/hubforge/api/jobs", user).json()["jobs"]
    assert "full" not in {j["spec"]["name"] for j in jobs}, "no half-made job folder"
    make_the_proxy_log(wb, proxy)  # lines again: the first says what was lost
    wait_for(
        lambda: "bytes of this log were lost: the disk was full" in wb.hub_log(),
        30,
        "the hub's log to say that lines were lost",
    )


def test_labeling_journal_on_a_full_disk_says_so(small_disk, monkeypatch):
    if not small_disk[1]:
        pytest.skip("filling a disk safely needs a tmpfs of its own, which needs root")
    from hubforge.labeling import api

    folder = small_disk[0] / "journal-area"
    journal = api.Journal(folder / "labeling" / ".journal.json")
    journal.add(1, 1, [{"value": {"choices": ["a"]}}])
    filler = small_disk[0] / "filler"
    try:
        fill(filler)
        with pytest.raises(api.LabelingError) as e:
            journal.add(1, 2, [{"value": {"choices": ["b"]}}])
        assert "Your label was not saved: No space left on device" in str(e.value)
        assert [entry["task"] for entry in journal.pending()] == [1], "nothing else lost"
    finally:
        filler.unlink(missing_ok=True)
    journal.add(1, 2, [{"value": {"choices": ["b"]}}])
    assert [entry["task"] for entry in journal.pending()] == [1, 2]


def test_a_killed_proxy_is_restarted_with_its_routes(wb, user):
    (proxy,) = marked(wb, "configurable-http-proxy")
    proxy.kill()
    wait_for(lambda: predict(wb, user) == 200, 90, "the proxy to come back with its routes")
    assert wb.api("GET", "hub/login").status_code == 200


def test_a_job_a_full_disk_ended_says_so(wb, user, small_disk):
    if not small_disk[1]:
        pytest.skip("filling a disk safely needs a tmpfs of its own, which needs root")
    # a line of 2,000 characters every 0.1 s: its log's last page fills at once
    loop = (
        "import time\nfor i in range(100000):\n"
        "    print(str(i) * 2000, flush=True)\n    time.sleep(0.1)\n"
    )
    r = wb.api(
        "POST",
        "services/hubforge/api/jobs",
        user,
        json={"script": loop, "spec": {"name": "writer", "max_restarts": 3}},
    )
    assert r.status_code == 201, r.text
    job = f"services/hubforge/api/jobs/{r.json()['id']}"
    wait_for(lambda: wb.api("GET", job, user).json()["state"] == "running", 120, "the job")
    filler = wb.data_dir / "filler"
    try:
        fill(filler)  # the worker's next line of output meets the full disk
        seen: list[dict] = []

        def failed() -> dict | None:
            seen.append(wb.api("GET", job, user).json())
            return seen[-1] if seen[-1].get("state") == "failed" else None

        record = wait_for(failed, 120, "the job to fail")
    finally:
        filler.unlink(missing_ok=True)
    reason = record["reason"]
    assert "worker-0 exited with" in reason and "was full" in reason, reason
    assert "free some space there" in reason and record.get("restarts", 0) == 0, record
