"""The TensorBoard widget in a real notebook: the scalars dashboard renders, no request fails."""

from __future__ import annotations

import time

import pytest

from tests.cleanup import leave_nothing_running
from tests.e2e.lab import code_notebook, login_and_start, open_and_run_first_cell, put_file
from tests.logs import write_logs

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_dashboard_renders_through_the_proxy_without_failed_requests(workbench, page, tmp_path):
    try:
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
        # leave the page login_and_start opened first: going to the notebook would abort the
        # old page's own polls (the sidebar's), which are no failure of this page (CI52)
        page.goto("about:blank")
        problems: list[str] = []
        in_flight: set = set()
        page.on(
            "console",
            lambda m: (
                problems.append(f"console: {m.text} ({m.location.get('url')})")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400
                else None
            ),
        )
        page.on("request", lambda r: in_flight.add(r))
        page.on("requestfinished", lambda r: in_flight.discard(r))

        def request_failed(r) -> None:
            in_flight.discard(r)
            problems.append(f"failed {r.method} {r.url} ({r.failure})")

        page.on("requestfailed", request_failed)
        open_and_run_first_cell(page, workbench, "vera", "board.ipynb")
        page.wait_for_selector("iframe.hubforge-tensorboard-frame", timeout=90_000)
        frame = page.frame_locator("iframe.hubforge-tensorboard-frame")
        # The scalars dashboard shows the run's epoch_loss chart.
        frame.locator("text=epoch_loss").first.wait_for(timeout=90_000)
        frame.locator("tf-scalar-card, .scalar-card, scalar-card").first.wait_for(timeout=60_000)
        # the dashboard's data requests (runs, tags, the scalars) all answered: nothing of
        # the page is in flight (JupyterLab's own polls answer quickly too)
        deadline = time.monotonic() + 60
        while in_flight and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert not in_flight, [r.url for r in in_flight]
        # every failure of the page counts: JupyterLab, the widget, TensorBoard, the proxy
        assert problems == [], problems
        link = page.locator(".hubforge-tensorboard a[target=_blank]")
        assert "/user/vera/proxy/absolute/" in link.get_attribute("href")
    finally:
        leave_nothing_running(workbench, "vera", password="vera-password-1")
