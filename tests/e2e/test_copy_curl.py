"""The sidebar's Copy curl gives a line that answers when pasted into a shell: built from the
model's signature (an image model wants 32x32x1, not [[0]]) and saying where $TOKEN comes
from. Monitor then shows that traffic: totals, statuses and plots; a canary of a second
version shows in the panel and Roll back ends it (#36)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.e2e.lab import login_and_start
from tests.models import image_model

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]
API = "services/hubforge/api/endpoints"
GATEWAY = "services/hubforge/endpoints/curly/digits/v1/models/digits"


def test_copy_curl_pasted_into_a_shell_answers_200(workbench, page):
    user, password = "curly", "curly-pass-1"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        login_and_start(page, workbench, user, password)
        token = workbench.login_token(user, password)
        export = image_model(workbench.data_dir / "hdfs" / "users" / user / "exports" / "digits")
        r = workbench.api(
            "POST",
            "services/hubforge/api/endpoints",
            token,
            json={"name": "digits", "model_dir": str(export)},
        )
        assert r.status_code == 201, r.text

        page.click(".jp-SideBar.jp-mod-left [data-id='hubforge-panel']")
        endpoint = "#hubforge-panel .hf-Endpoint[data-endpoint='digits']"
        page.wait_for_selector(f"{endpoint} button:has-text('Copy curl')", timeout=120_000)
        page.click(f"{endpoint} button:has-text('Copy curl')")
        page.wait_for_selector("text=Copied:", timeout=60_000)
        line = page.evaluate("navigator.clipboard.readText()")

        # a short line, not a wall of 1,024 zeros; it says where to get a token
        assert len(line) < 600, line
        assert "# $TOKEN: a token of yours, from " in line and line.endswith("/hub/token"), line
        # pasted into a shell with a token of the user's in $TOKEN: the model answers
        ran = subprocess.run(
            ["bash", "-c", line + "\n"],
            env={**os.environ, "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=120,
        )
        answer = json.loads(ran.stdout)  # JSON, not an error page
        assert "predictions" in answer, (ran.stdout, ran.stderr)
        (probabilities,) = answer["predictions"]
        assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 1e-3, answer

        # Monitor: the traffic just sent (the pasted line, the metadata Copy curl read, and
        # four more calls with a wrong shape: 400s), as plots and totals in a tab
        for _ in range(4):
            bad = {"instances": [[0]]}
            r = workbench.api("POST", f"{GATEWAY}:predict", token, json=bad)
            assert r.status_code == 400
        counted = workbench.api("GET", f"{API}/digits/traffic", token).json()["totals"]
        assert counted["by_status"]["400"] == 4 and counted["by_status"]["200"] >= 2, counted
        page.click(f"{endpoint} button:has-text('Monitor')")
        summary = page.wait_for_selector(".hf-Traffic .hf-TrafficSummary:has-text('requests')")
        assert summary.inner_text().startswith(f"{counted['requests']} requests in 1 h")
        assert "400: 4" in page.inner_text(".hf-Traffic .hf-Details")
        assert page.query_selector(".hf-TrafficPlot[data-keys='rps'] polyline.hf-Line-rps")
        # (latency only where there were requests: a dot for a lone step, else a line)
        assert page.query_selector(".hf-TrafficPlot[data-keys='p50_ms p99_ms'] .hf-Line-p99_ms")
        page.select_option(".hf-Traffic .hf-TrafficWindow", "15m")
        page.wait_for_selector(".hf-Traffic .hf-TrafficSummary:has-text('in 15 min')")

        # a canary of a second version: the panel says how far it is; Roll back ends it
        shutil.copytree(export, export.parent / "digits-2")
        body = {"name": "digits", "model_dir": str(export.parent / "digits-2"), "canary": 10}
        r = workbench.api("POST", API, token, json={**body, "canary": {"steps": [10, 100]}})
        assert r.status_code == 201 and r.json()["rollout"]["state"] == "running", r.text
        rollout = f"{endpoint} .hf-Rollout"
        page.wait_for_selector(f"{rollout}:has-text('version 2 gets 10% (version 1 the rest)')")
        page.click(f"{endpoint} button:has-text('Roll back')")
        assert "Every request goes to version 1 again" in page.inner_text(".jp-Dialog")
        page.click(".jp-Dialog button:has-text('Roll back')")
        page.wait_for_selector(f"{rollout}:has-text('rolled back to version 1: cancelled')")
        assert not page.query_selector(f"{endpoint} button:has-text('Roll back')")
    finally:
        workbench.api("DELETE", "services/hubforge/api/endpoints/digits", workbench.admin_token())
        workbench.ensure_stopped(user)
