"""The Hubforge panel's labeling row, the launcher's TensorBoard card and the notebook
toolbar's Run as job, clicked in Chromium as a new user would."""

from __future__ import annotations

import pytest

from hubforge import labeling
from tests.e2e.lab import login_and_start, tab_walk
from tests.integration.test_labeling import as_user  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_label_here_launcher_card_and_toolbar_button(workbench, page, as_user):  # noqa: F811
    as_user("lior")
    labeling.create_project(
        "panel-texts", ["a first text", "a second text"], ["yes", "no"], "text-classification"
    )
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else 0)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else 0)
    login_and_start(page, workbench, "lior", "lior-password-1")
    try:
        # the launcher's TensorBoard card, before any job: it says what to do first
        page.click(".jp-Launcher .jp-LauncherCard[title^='TensorBoard']")
        dialog = page.wait_for_selector(".jp-Dialog")
        assert "You have no jobs yet" in dialog.inner_text()
        page.click(".jp-Dialog button:has-text('Close')")

        # the panel lists the project with its progress; Label here writes and opens a notebook
        page.click(".jp-SideBar.jp-mod-left [data-id='hubforge-panel']")
        row = "#hubforge-panel .hf-Project:has-text('panel-texts')"
        page.wait_for_selector(row, timeout=60_000)
        assert "0/2" in page.inner_text(row)
        # keyboard: Tab reaches the project's actions, Enter on Label here
        reached = tab_walk(page, f"{row} button:has-text('Label here')", 2)
        assert reached == ["Label here", "Label Studio"], reached
        page.focus(f"{row} button:has-text('Label here')")
        page.keyboard.press("Enter")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell:has-text('label(\"panel-texts\")')")
        assert page.locator(".lm-TabBar-tab:has-text('label-panel-texts.ipynb')").count() == 1
        page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=120_000)
        page.click(".jp-NotebookPanel .jp-Cell .jp-InputArea-editor")
        page.keyboard.press("Shift+Enter")
        widget = page.wait_for_selector(".hubforge-label", timeout=120_000)
        page.wait_for_selector(".hubforge-label >> text=/a (first|second) text/", timeout=60_000)
        assert "0 / 2" in widget.inner_text() or "0/2" in widget.inner_text()

        # the notebook toolbar's Run as job opens the dialog for this notebook
        page.click(".jp-NotebookPanel-toolbar [data-jp-item-name='hubforge-run-as-job']")
        dialog = page.wait_for_selector(".jp-Dialog .hf-RunAsJob-body", timeout=60_000)
        assert "label-panel-texts.ipynb" in page.inner_text(".jp-Dialog")
        assert page.input_value(".jp-Dialog input[name='workers']") == "1"
        page.click(".jp-Dialog button:has-text('Cancel')")
        page.wait_for_selector(".jp-Dialog", state="detached")
        assert not problems, problems
    finally:
        workbench.ensure_stopped("lior")
