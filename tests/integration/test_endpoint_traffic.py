"""An endpoint's traffic as its owner sees it (#36): the gateway counts every request it
forwards; the owner reads requests, errors, latency, statuses and versions through REST,
the Python API and the CLI; nobody else does, and names that are no endpoint leave nothing."""

from __future__ import annotations

import os
import re
import time

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
    finally:
        workbench.api("DELETE", f"{API}/watched", tara)
