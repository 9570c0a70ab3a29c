"""Click the Train widget's button in a real notebook inside the hub."""

from __future__ import annotations

import json

import pytest

from tests.e2e.lab import code_notebook, login_and_start, open_and_run_first_cell, put_file
from tests.notebooks import training_notebook

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_train_button_runs_a_job_through_the_service(workbench, page, tmp_path):
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
    page.wait_for_selector(".hubforge-train .hubforge-state:has-text('succeeded')", timeout=240_000)
    page.wait_for_selector(".hubforge-train svg.hubforge-chart polyline")
    text = widget.inner_text()
    assert "worker-1: succeeded" in text
    # The service ran it: the job is the user's, listed by the service.
    jobs = json.loads(page.request.get(workbench.url + "user/tess/hubforge/api/jobs").text())
    assert [j["spec"]["workers"] for j in jobs["jobs"]] == [2]
    workbench.stop_server("tess", workbench.admin_token())
