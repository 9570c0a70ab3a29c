"""One user's flood of slow requests does not hold up another user's (security review, the
service's account, F1: a user stopped the helper's children that worked for him with
SIGSTOP and flooded the service; everyone else's jobs view then took 65 s)."""

from __future__ import annotations

import contextlib
import pwd
import subprocess
import sys
import threading
import time

import pytest
import requests

from hubforge import accounts
from tests.workbench import isolated

pytestmark = [
    pytest.mark.hub,
    pytest.mark.skipif(
        not isolated(),
        reason="the helper's children run as the user only with per-user OS accounts (root)",
    ),
]

# run as the flooder's own account: stop every process it may signal, again and again (the
# helper's children that became this account while they work on its requests among them)
STOP_ALL = """
import os, signal, time
while True:
    try:
        os.kill(-1, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    time.sleep(0.01)
"""


def _job(workbench, token: str) -> str:
    r = workbench.api(
        "POST",
        "services/hubforge/api/jobs",
        token,
        json={"script": "print('hi')\n", "spec": {"name": "hi"}},
    )
    assert r.status_code == 201, r.text
    path = f"services/hubforge/api/jobs/{r.json()['id']}"
    deadline = time.monotonic() + 120
    while workbench.api("GET", path, token).json()["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the job never ended"
        time.sleep(0.5)
    return r.json()["id"]


def _kill_account(uid: int) -> None:
    for _ in range(3):
        subprocess.run(["pkill", "-KILL", "-U", str(uid)], capture_output=True)
        time.sleep(0.2)


def test_a_users_stopped_requests_do_not_hold_up_anothers(workbench):
    flooder = workbench.create_user("flood-fred")
    victim = workbench.create_user("flood-vera")
    _job(workbench, flooder)  # each has an account and a job record in their area
    victim_job = _job(workbench, victim)
    uid = pwd.getpwnam(accounts.account_name("flood-fred", workbench.state_dir)).pw_uid
    stopper = subprocess.Popen(
        [sys.executable, "-c", STOP_ALL], user=uid, group=uid, cwd="/", env={"PATH": "/usr/bin"}
    )
    url = f"{workbench.url}services/hubforge/api/jobs"
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                requests.get(url, headers={"Authorization": f"token {flooder}"}, timeout=3)

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(40)]
    try:
        for t in threads:
            t.start()
        time.sleep(5)  # every thread the service has would be held by now without turns
        waited = []
        for _ in range(3):
            started = time.monotonic()
            r = workbench.api("GET", "services/hubforge/api/jobs", victim)
            waited.append(time.monotonic() - started)
            assert r.status_code == 200, r.text
            assert [j["id"] for j in r.json()["jobs"]] == [victim_job]
            time.sleep(1)
        assert max(waited) < 10, f"flood-vera's job list took {waited} s during the flood"
        assert stopper.poll() is None  # the flood was on all along
    finally:
        stop.set()
        stopper.kill()
        stopper.wait()
        _kill_account(uid)  # the stopped helper children with it
        for t in threads:
            t.join(timeout=10)
    r = workbench.api("GET", "services/hubforge/api/jobs", flooder)
    assert r.status_code in (200, 429), r.text  # the flooder is served again once it stops
