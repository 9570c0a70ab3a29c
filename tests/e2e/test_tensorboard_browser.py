"""The TensorBoard widget in a real notebook: the scalars dashboard renders, no request fails."""

from __future__ import annotations

import pytest

from tests.e2e.lab import code_notebook, login_and_start, open_and_run_first_cell, put_file
from tests.logs import write_logs

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_dashboard_renders_through_the_proxy_without_failed_requests(workbench, page, tmp_path):
    login_and_start(page, workbench, "vera", "vera-password-1")
    write_logs(workbench.data_dir / "homes" / "vera" / "runs" / "first")
    put_file(
        page,
        workbench,
        "vera",
        "board.ipynb",
        code_notebook(
            "from hubforge.widgets import tensorboard\ntensorboard('runs/first', height=500)"
        ),
    )
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(f"failed {r.url}"))
    open_and_run_first_cell(page, workbench, "vera", "board.ipynb")
    page.wait_for_selector("iframe.hubforge-tensorboard-frame", timeout=90_000)
    frame = page.frame_locator("iframe.hubforge-tensorboard-frame")
    # The scalars dashboard shows the run's epoch_loss chart.
    frame.locator("text=epoch_loss").first.wait_for(timeout=90_000)
    frame.locator("tf-scalar-card, .scalar-card, scalar-card").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)  # let the dashboard finish its data requests
    tensorboard_failures = [f for f in failed if "/proxy/" in f]
    assert tensorboard_failures == [], tensorboard_failures
    link = page.locator(".hubforge-tensorboard a[target=_blank]")
    assert "/user/vera/proxy/absolute/" in link.get_attribute("href")
    workbench.stop_server("vera", workbench.admin_token())
