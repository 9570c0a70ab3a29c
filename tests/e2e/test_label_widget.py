"""Label an item with a key press in a real notebook inside the hub."""

from __future__ import annotations

import pytest

from tests.e2e.lab import code_notebook, login_and_start, open_and_run_first_cell, put_file
from tests.integration.test_labeling import shapes

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_key_press_labels_the_item(workbench, page, tmp_path):
    shapes(workbench.data_dir / "hdfs" / "datasets" / "keys", 4)
    login_and_start(page, workbench, "kira", "kira-password-1")
    source = (
        "from hubforge import labeling\n"
        "from hubforge.widgets import label\n"
        "project = labeling.create_project('keys', 'datasets/keys', ['circle', 'square'])\n"
        "label(project)"
    )
    put_file(page, workbench, "kira", "label.ipynb", code_notebook(source))
    open_and_run_first_cell(page, workbench, "kira", "label.ipynb")
    page.wait_for_selector(".hubforge-label img.hf-item", timeout=120_000)
    page.wait_for_selector(".hubforge-label .hf-count:has-text('0 / 4 labeled')")
    first = page.get_attribute(".hubforge-label img.hf-item", "src")
    page.click(".hubforge-label .hf-count")  # focus the widget, as a user would
    page.keyboard.press("2")
    page.wait_for_selector(".hubforge-label .hf-count:has-text('1 / 4 labeled')")
    page.wait_for_selector(".hubforge-label .hf-status:has-text('Saved square')")
    assert page.get_attribute(".hubforge-label img.hf-item", "src") != first
    assert page.is_visible(".hubforge-label img.hf-item")
    page.screenshot(path=str(tmp_path / "label-widget.png"))
    workbench.stop_server("kira", workbench.admin_token())
