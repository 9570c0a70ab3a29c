"""No code, in Chromium (#34): a labeling project of generated images → the panel's
"Train a model" → a search under Tuning → its Report page (accuracy, confusion matrix) →
Deploy best → the endpoint answers. Another user's token is refused by the user's server."""

from __future__ import annotations

import pytest

from hubforge import serving
from tests.e2e.lab import login_and_start
from tests.integration.test_classify import label_some, pixels
from tests.integration.test_labeling import as_user, shapes_project  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.hub, pytest.mark.timeout(900)]
PANEL = ".jp-SideBar.jp-mod-left [data-id='hubforge-panel']"


def test_train_a_model_report_and_deploy_from_the_panel(workbench, page, as_user):  # noqa: F811
    user = "clara-cls"
    as_user(user)
    project = shapes_project(workbench, "panel-shapes")
    labeled = label_some(project, 40)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else 0)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    login_and_start(page, workbench, user, "clara-password-1")
    endpoint = None
    try:
        page.click(PANEL)
        row = "#hubforge-panel .hf-Project:has-text('panel-shapes')"
        page.wait_for_selector(f"{row} button:has-text('Train a model')", timeout=60_000)
        assert "40/50 labeled" in page.inner_text(row)
        page.click(f"{row} button:has-text('Train a model')")
        page.wait_for_selector(".jp-Dialog input", timeout=30_000)
        assert "on its 40 labeled items" in page.inner_text(".jp-Dialog")
        page.fill(".jp-Dialog input", "2")
        page.click(".jp-Dialog button.jp-mod-accept")
        page.wait_for_selector(".jp-Dialog", state="detached")

        group = "#hubforge-panel .hf-Tuning:has-text('panel-shapes-')"
        page.wait_for_selector(f"{group}[data-state='succeeded']", timeout=600_000)
        assert "2/2 trials done · 2 at a time · bayesian · max val_accuracy" in page.inner_text(
            group
        )
        page.wait_for_selector(f"{group} button:has-text('Report')", timeout=60_000)
        with page.context.expect_page() as opened:
            page.click(f"{group} button:has-text('Report')")
        report = opened.value
        report.wait_for_load_state()
        page_text = report.content()
        assert 'aria-label="Confusion matrix"' in page_text, (report.url, page_text[:2000])
        text = report.inner_text("body")
        assert "Accuracy per class" in text and "validation items" in text, text
        cells = report.locator("svg[aria-label='Confusion matrix'] rect").count()
        assert cells == 4  # two classes: a 2 by 2 matrix
        report.close()

        page.click(f"{group} button:has-text('Deploy best')")
        page.wait_for_selector(".jp-Dialog input", timeout=30_000)
        page.fill(".jp-Dialog input", "shapes-ep")
        page.click(".jp-Dialog button.jp-mod-accept")
        page.wait_for_selector(
            "#hubforge-panel .hf-Endpoint:has-text('shapes-ep')", timeout=180_000
        )
        endpoint = serving.get("shapes-ep")
        keys = labeled[:6]
        said = endpoint.predict([pixels(workbench, k) for k in keys])
        # one probability per label (circle, square): the model the search chose answers
        assert len(said) == 6 and all(len(p) == 2 for p in said), said
        assert all(abs(sum(p) - 1) < 1e-3 for p in said), said

        # Pre-label the rest: the 10 items not labeled get the best model's guess
        page.click(f"{group} button:has-text('Pre-label the rest')")
        page.wait_for_selector("text=/Pre-labeled 10 items of panel-shapes/", timeout=300_000)
        guessed = project.tasks(labeled=False)
        assert len(guessed) == 10 and all(t["predictions"] for t in guessed), guessed

        other = workbench.create_user("clara-other")
        r = workbench.api("GET", f"user/{user}/hubforge/api/classifications", other)
        assert r.status_code == 403
        assert not problems, problems
    finally:
        if endpoint is not None:
            endpoint.undeploy()
        workbench.ensure_stopped(user)
