"""Endpoint replicas on one machine (#36): three copies behind the gateway; one killed with
kill -9 under load costs no call (the gateway sends what it was answering to another copy)
and is started again; a range scales up under load and back down when it ends; the copies
run as their owner; bad settings are refused with what to do."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import psutil
import pytest

from hubforge import serving
from tests import cli_record
from tests.callers import PACE
from tests.models import keras_model

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]
API = "services/hubforge/api/endpoints"
USER = "remy"
GATEWAY = f"services/hubforge/endpoints/{USER}/copies/v1/models/copies:predict"


def record(workbench, token: str) -> dict:
    return workbench.api("GET", f"{API}/copies", token).json()


def wait_for(workbench, token: str, check, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while not check(current := record(workbench, token)):
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    return current


class Load:
    """``clients`` threads calling predict through the gateway until stopped; answers
    counted by status (a failed connection counts as its exception's name)."""

    def __init__(self, workbench, token: str, clients: int):
        self.workbench, self.token, self.seen = workbench, token, Counter()
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                r = self.workbench.api(
                    "POST", GATEWAY, self.token, json={"instances": [[1.0, 2, 3, 4]]}
                )
                outcome = str(r.status_code)
                if r.status_code == 200:
                    assert r.json() == {"predictions": [[10.0]]}, r.text
            except Exception as e:  # (counted: the test says which)
                outcome = type(e).__name__
            with self.lock:
                self.seen[outcome] += 1
            self.stop.wait(PACE)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_copies_survive_a_kill_and_scale_with_the_load(workbench, monkeypatch):
    token = workbench.create_user(USER)
    exports = workbench.data_dir / "hdfs" / "users" / USER / "exports"
    keras_model(exports, 1)  # y = sum(x)
    env = {"HUBFORGE_SERVICE_URL": workbench.url + "services/hubforge/api"}
    monkeypatch.setenv("HUBFORGE_SERVICE_URL", env["HUBFORGE_SERVICE_URL"])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    env = {**os.environ, **env, "JUPYTERHUB_API_TOKEN": token}
    try:
        # bad settings: refused with what to do, nothing deployed
        for bad, says in (
            (0, "from 1 to 4"),
            (99, "from 1 to 4"),
            ("three", "a number or"),
            ({"min": 3, "max": 2}, "min (3) is more than max (2)"),
            ({"min": 1, "max": 2, "target_concurrency": -1}, "requests in flight per copy"),
            ({"copies": 2}, "unknown ['copies']"),
        ):
            body = {"name": "copies", "model_dir": str(exports / "1"), "replicas": bad}
            r = workbench.api("POST", API, token, json=body)
            assert r.status_code == 400 and says in r.json()["message"], (bad, r.text)
        assert workbench.api("GET", f"{API}/copies", token).status_code == 404

        ep = serving.deploy(str(exports / "1"), "copies", replicas=3)
        assert ep.ready == 3 and ep.replicas["min"] == ep.replicas["max"] == 3, ep.record
        pids = [p["pid"] for p in ep.record["processes"]]
        assert len(set(pids)) == 3
        owner_uid = psutil.Process(pids[0]).uids().real
        assert owner_uid != 0 and {psutil.Process(p).uids().real for p in pids} == {owner_uid}

        # kill -9 of one copy under load: the calls it had go to another copy
        with Load(workbench, token, clients=8) as load:
            time.sleep(3)
            os.kill(pids[1], signal.SIGKILL)
            time.sleep(4)
        assert load.seen["200"] > 50 and set(load.seen) == {"200"}, load.seen
        # ... and the copy is started again (a new process beside the two that lived)
        now = wait_for(workbench, token, lambda r: r["ready"] == 3 and pids[1] not in pid_set(r))
        assert {pids[0], pids[2]} <= pid_set(now)
        # a copy that hangs (alive, answering nothing: SIGSTOP) fails its health checks and
        # is replaced; the calls it held are answered by another copy once it is stopped
        hung = sorted(pid_set(now))[0]
        with Load(workbench, token, clients=4) as load:
            os.kill(hung, signal.SIGSTOP)
            now = wait_for(
                workbench, token, lambda r: r["ready"] == 3 and hung not in pid_set(r), 90
            )
            time.sleep(3)
        assert load.seen["200"] > 20 and set(load.seen) == {"200"}, load.seen
        assert not running(hung)
        assert (
            "copies 3/3"
            in cli_record.run(["serve", "list"], env=env, capture_output=True, text=True).stdout
        )

        # scaled: 1 to 3 copies at 0.2 calls in flight each (what a few clients through the
        # hub's proxy keep in flight at the gateway); with no load it comes down to one copy
        scaled = ["serve", "deploy", str(exports / "1"), "--name", "copies"]
        cli = cli_record.run(
            [*scaled, "--replicas", "1-3", "--target-concurrency", "0.2"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0, cli.stderr
        assert "(scaled 1-3)" in cli.stdout, cli.stdout
        idle = lambda r: r["ready"] == 1 and len(r["processes"]) == 1  # noqa: E731
        wait_for(workbench, token, idle)
        # 6 clients ask for more copies; no call fails while they start
        with Load(workbench, token, clients=6) as load:
            up = wait_for(workbench, token, lambda r: r["ready"] >= 2, timeout=90)
            time.sleep(2)
        assert set(load.seen) == {"200"}, load.seen
        assert up["load"]["mean_in_flight"] > 0.2, up["load"]
        # the load ended: back to one copy once the scale-down delay (4 s here) has passed
        wait_for(workbench, token, idle)

        bad_cli = cli_record.run(
            [*scaled, "--replicas", "2", "--target-concurrency", "3"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert bad_cli.returncode == 2 and "goes with a range" in bad_cli.stderr
        cpu = cli_record.run(
            [*scaled, "--replicas", "1-2", "--target-cpu", "50"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert cpu.returncode == 2 and "give replicas.target_concurrency" in cpu.stderr
    finally:
        workbench.api("DELETE", f"{API}/copies", token)
    # every copy stopped with the endpoint
    deadline = time.monotonic() + 30
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(running(p) for p in pids)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_set(current: dict) -> set[int]:
    return {p["pid"] for p in current["processes"] if p["running"]}
