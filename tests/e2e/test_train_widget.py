"""Click the Train widget's button in a real notebook inside the hub."""

from __future__ import annotations

import json
import re

import pytest

from tests.cleanup import leave_nothing_running
from tests.e2e.lab import code_notebook, login_and_start, open_and_run_first_cell, put_file
from tests.notebooks import training_notebook

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_train_button_runs_a_job_through_the_service(workbench, page, tmp_path):
    try:
        login_and_start(page, workbench, "tess", "tess-password-1")
        notebook = json.loads(training_notebook(tmp_path / "train.ipynb").read_text())
        put_file(page, workbench, "tess", "train.ipynb", {"type": "notebook", "content": notebook})
        put_file(
            page,
            workbench,
            "tess",
            "launch.ipynb",
            code_notebook(
                "from hubforge.widgets import train\ntrain('train.ipynb', poll_interval=0.5)"
            ),
        )
        open_and_run_first_cell(page, workbench, "tess", "launch.ipynb")
        widget = page.wait_for_selector(".hubforge-train", timeout=60_000)
        page.fill(".hubforge-train input[type=number] >> nth=0", "2")  # workers
        page.click(".hubforge-train button:has-text('Train')")
        page.wait_for_selector(
            ".hubforge-train .hubforge-state:has-text('succeeded')", timeout=240_000
        )
        page.wait_for_selector(".hubforge-train svg.hubforge-chart polyline")
        text = widget.inner_text()
        assert "worker-1: succeeded" in text
        # The service ran it: the job is the user's, listed by the service.
        jobs = json.loads(page.request.get(workbench.url + "user/tess/hubforge/api/jobs").text())
        assert [j["spec"]["workers"] for j in jobs["jobs"]] == [2]

        # every other button, clicked as a user would, and what each one shows
        train = ".hubforge-train"
        page.click(f"{train} button:text-is('Logs') >> nth=0")
        logs = page.wait_for_selector(f"{train} .hubforge-logs", state="visible")
        assert "shell-command-ran" in logs.inner_text()  # worker-0's own output

        page.click(f"{train} button:text-is('TensorBoard') >> nth=0")
        board = page.wait_for_selector(f"{train} .hubforge-tensorboard-frame", timeout=120_000)
        assert "/proxy/absolute/" in board.get_attribute("src")
        frame = board.content_frame()
        frame.wait_for_selector(
            "text=TensorBoard", timeout=120_000
        )  # the dashboard, through the hub
        page.click(f"{train} .hubforge-tensorboard button:text-is('Stop')")
        page.wait_for_selector(f"{train} .hubforge-tensorboard >> text=TensorBoard stopped.")

        page.click(f"{train} button:text-is('Deploy') >> nth=0")  # the job's Deploy: the widget
        deploy = f"{train} .hubforge-deploy"
        page.wait_for_selector(deploy)
        page.click(f"{deploy} button:text-is('Deploy')")
        page.wait_for_selector(f"{deploy} .hubforge-state:has-text('running')", timeout=120_000)
        page.click(f"{deploy} button:text-is('Send')")
        answer = page.wait_for_selector(f"{deploy} .hubforge-response", timeout=60_000)
        rows = json.loads(answer.inner_text())
        assert len(rows) == 1 and 0 <= rows[0][0] <= 1  # the sigmoid's answer for the example row
        curl = page.inner_text(f"{deploy} .hubforge-copy-text")
        assert curl.startswith('curl -H "Authorization: token $TOKEN"') and ":predict" in curl
        # the page is on loopback (a secure context): with the permission a user grants, the
        # button copies through the clipboard API, and the clipboard holds the line as shown
        origin = re.match(r"https?://[^/]+", workbench.url).group(0)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        page.click(f"{deploy} .hubforge-copy-button")
        page.wait_for_selector(f"{deploy} .hubforge-copy-button:text-is('Copied')")
        assert page.evaluate("navigator.clipboard.readText()") == curl
        page.click(f"{deploy} button:text-is('Export to mobile')")
        page.wait_for_selector(f"{deploy} table >> text=quantization", timeout=120_000)
        assert ".tflite" in page.inner_text(f"{deploy} table")
        page.click(f"{deploy} button:text-is('Undeploy')")
        page.wait_for_selector(f"{deploy} >> text=undeployed")
        listed = page.request.get(workbench.url + "user/tess/hubforge/api/endpoints")
        assert json.loads(listed.text())["endpoints"] == [], listed.text()

        # a slow run, cancelled from the widget: the job ends cancelled, Train is back
        page.fill(f"{train} .widget-text:has(label:text-is('delay')) input", "2")
        page.click(f"{train} button:text-is('Train') >> nth=0")
        page.wait_for_selector(f"{train} .hubforge-state:has-text('running')", timeout=120_000)
        page.click(f"{train} button:text-is('Cancel')")
        page.wait_for_selector(f"{train} .hubforge-state:has-text('cancelled')", timeout=120_000)
        assert page.is_enabled(f"{train} button:text-is('Train') >> nth=0")
        jobs = json.loads(page.request.get(workbench.url + "user/tess/hubforge/api/jobs").text())
        assert sorted(j["state"] for j in jobs["jobs"]) == ["cancelled", "succeeded"]
    finally:
        leave_nothing_running(workbench, "tess", password="tess-password-1")
