"""An endpoint's traffic as its owner sees it (#36): the gateway counts every request it
forwards; the owner reads requests, errors, latency, statuses and versions through REST,
the Python API and the CLI; nobody else does, and names that are no endpoint leave nothing."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest

from hubforge import serving
from hubforge.serving import traffic
from tests import cli_record
from tests.models import keras_model
from tests.workbench import service_dir

pytestmark = pytest.mark.hub
API = "services/hubforge/api/endpoints"
GATEWAY = "services/hubforge/endpoints/tara/watched/v1/models/watched"
ROW = {"instances": [[1, 2, 3, 4]]}


def test_the_owner_sees_what_the_gateway_forwarded_and_nobody_else_does(workbench, monkeypatch):
    tara, ursa = workbench.create_user("tara"), workbench.create_user("ursa")
    exports = workbench.data_dir / "hdfs" / "users" / "tara" / "exports"
    for version in (1, 2):
        keras_model(exports, version, bias=float(version))
        r = workbench.api(
            "POST", API, tara, json={"name": "watched", "model_dir": str(exports / str(version))}
        )
        assert r.status_code == 201, r.text
    try:
        calls = [(":predict", ROW)] * 20 + [("/versions/2:predict", ROW)] * 5
        calls += [(":predict", {"instances": [[1, 2]]})] * 3  # the caller's mistakes: 400
        for suffix, body in calls:
            workbench.api("POST", GATEWAY + suffix, tara, json=body)
        # a name that is no endpoint: refused, counted nowhere, no file for it
        r = workbench.api(
            "POST", "services/hubforge/endpoints/tara/ghost/v1/models/ghost:predict", tara, json=ROW
        )
        assert r.status_code == 404

        r = workbench.api("GET", f"{API}/watched/traffic?window=15m&points=30", tara)
        assert r.status_code == 200, r.text
        totals = r.json()["totals"]
        assert totals["requests"] == 28, totals
        assert totals["by_status"] == {"200": 25, "400": 3}
        assert totals["by_version"] == {"2": 5, "latest": 23}
        assert totals["errors"] == 0 and totals["error_rate"] == 0.0  # 400s are no errors
        assert 0 < totals["p50_ms"] <= totals["p99_ms"] < 30000
        series = r.json()["series"]
        assert len(series) == 30 and sum(s["requests"] for s in series) == 28

        # the Python API and the CLI, as in tara's server
        env = {
            "HUBFORGE_SERVICE_URL": workbench.url + "services/hubforge/api",
            "JUPYTERHUB_API_TOKEN": tara,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        report = serving.get("watched").traffic("15m")
        assert (report.requests, report.by_status) == (28, {"200": 25, "400": 3})
        cli = ["serve", "traffic", "watched"]
        done = cli_record.run(
            [*cli, "--window", "15m", "--points", "20"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("watched: 28 requests in the last 15 min"), done.stdout
        assert "status   200: 25, 400: 3" in done.stdout
        bad = cli_record.run(
            [*cli, "--window", "2w"], env={**os.environ, **env}, capture_output=True, text=True
        )
        assert bad.returncode == 2 and "a time from 10s to 1d, like 15m" in bad.stderr

        # nobody else: another user's own name space has no such endpoint; naming tara is
        # refused; no token at all is refused; an admin may look
        r = workbench.api("GET", f"{API}/watched/traffic", ursa)
        assert r.status_code == 404, r.text
        r = workbench.api("GET", f"{API}/watched/traffic?owner=tara", ursa)
        assert r.status_code == 403, r.text
        assert workbench.api("GET", f"{API}/watched/traffic").status_code == 403
        r = workbench.api("GET", f"{API}/watched/traffic?owner=tara", workbench.admin_token())
        assert r.status_code == 200 and r.json()["totals"]["requests"] == 28
        r = workbench.api("GET", f"{API}/watched/traffic?window=forever", tara)
        assert r.status_code == 400 and "like 15m, 1h or 1d" in r.json()["message"]
        for points in ("0", "²", "9999"):
            r = workbench.api("GET", f"{API}/watched/traffic?points={points}", tara)
            assert r.status_code == 400 and "from 1 to 500" in r.json()["message"], r.text

        # an admin's hub home lists it with its last hour
        admin = workbench.login("admin", workbench.admin_password)
        page = admin.get(workbench.url + "hub/home", timeout=60).text
        row = re.search(r'data-endpoint="tara/watched">(.*?)</tr>', page, re.S)
        assert row, page[-3000:]
        assert "<td>28 (" in row.group(1) and "<td>0.0%</td>" in row.group(1), row.group(1)

        # kept in the service's folder, for the service's eyes only
        kept = service_dir(workbench.data_dir) / "endpoint-traffic" / "tara"
        deadline = time.monotonic() + 3 * traffic.BIN
        while not (kept / "watched.json").exists():
            assert time.monotonic() < deadline, "the counts were never saved"
            time.sleep(0.5)
        assert (kept / "watched.json").stat().st_mode & 0o077 == 0
        assert not (kept / "ghost.json").exists()

        # the endpoint process's model calls, read by the service every 10 s: one row each
        # (no batching); the 400s never reached the model
        deadline = time.monotonic() + 3 * traffic.BIN
        while not (totals := serving.get("watched").traffic("15m").summary["totals"])[
            "model_calls"
        ]:
            assert time.monotonic() < deadline, totals
            time.sleep(1)
        assert (totals["model_calls"], totals["batch_size"]) == (25, 1.0), totals
    finally:
        workbench.api("DELETE", f"{API}/watched", tara)


def test_logged_calls_are_the_owners_and_shifted_inputs_raise_the_drift_alert(
    workbench, monkeypatch
):
    token, other = workbench.create_user("dria"), workbench.create_user("dirk")
    exports = workbench.data_dir / "hdfs" / "users" / "dria" / "exports"
    keras_model(exports, 1, bias=0.0)
    monkeypatch.setenv("HUBFORGE_SERVICE_URL", workbench.url + "services/hubforge/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    gateway = "services/hubforge/endpoints/dria/drifty/v1/models/drifty:predict"
    train = np.random.default_rng(0).normal(0, 1, (3000, 4))
    try:
        ep = serving.deploy(str(exports / "1"), "drifty")
        assert ep.log_requests(rate=1.0)["rate"] == 1.0
        assert ep.watch_drift(train)["baseline_features"] == 4
        calls = np.random.default_rng(1).normal(0, 1, (120, 4))
        for row in calls:
            r = workbench.api("POST", gateway, token, json={"instances": [row.tolist()]})
            assert r.status_code == 200
        logged = wait_for_logged(ep, 120)
        assert logged[0]["request"] == {"instances": [calls[0].tolist()]}
        assert logged[0]["response"]["predictions"][0][0] == pytest.approx(calls[0].sum(), 1e-4)
        report = ep.drift(train)
        assert not report.drifted and report.rows == 120, report.features
        assert not wait_for_check(ep, 120)["drifted"]

        shifted_at = time.time()
        moved = np.random.default_rng(2).normal(0, 1, (120, 4))
        moved[:, 1] += 2.0
        for row in moved:
            workbench.api("POST", gateway, token, json={"instances": [row.tolist()]})
        assert wait_for_check(ep, 240)["drifted"]  # the service's own check raised it
        wait_for_logged(ep, 240)
        report = ep.drift(train, since=shifted_at)
        assert report.drifted and report.worst_feature == 1 and report.rows == 120

        files = sorted((exports.parent / "models" / "drifty" / "requests").glob("*.jsonl"))
        assert files and all(f.stat().st_mode & 0o077 == 0 for f in files)  # the owner's only
        # another user: dria's endpoint is none of theirs to log or compare
        for method, path, body in (
            ("PUT", "request-log", {"rate": 1.0}),
            ("GET", "request-log", None),
            ("PUT", "drift-baseline", {"rows": [[0, 0, 0, 0]]}),
        ):
            r = workbench.api(method, f"{API}/drifty/{path}", other, json=body)
            assert r.status_code == 404, r.text
        for path, body, says in (
            ("request-log", {"rate": 5}, "from 0 (off) to 1"),
            ("drift-baseline", {"rows": "x"}, "numbers, one row per example"),
            ("drift-baseline", {"rows": [[0, 0]] * 2001}, "at most 2000 rows"),
        ):
            r = workbench.api("PUT", f"{API}/drifty/{path}", token, json=body)
            assert r.status_code == 400 and says in r.json()["message"], r.text
    finally:
        workbench.api("DELETE", f"{API}/drifty", token)


def wait_for_logged(ep, count: int) -> list[dict]:
    deadline = time.monotonic() + 4 * traffic.BIN
    while len(logged := ep.logged_requests()) < count:
        assert time.monotonic() < deadline, len(logged)
        time.sleep(0.5)
    return logged


def wait_for_check(ep, rows: int) -> dict:
    """The service's drift check once it has seen ``rows`` sampled rows."""
    deadline = time.monotonic() + 60
    while True:
        assert ep.status == "running"  # (reads the endpoint's record again)
        state = ep.drift_alert
        if state and state.get("rows", 0) >= rows:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
