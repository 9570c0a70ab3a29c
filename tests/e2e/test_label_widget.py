"""Label an item with a key press in a real notebook inside the hub."""

from __future__ import annotations

import re
import time

import pytest
import requests

from hubforge import labeling
from hubforge.labeling import connection as labeling_connection
from tests.cleanup import leave_nothing_running
from tests.e2e.lab import code_notebook, login_and_start, open_and_run_first_cell, put_file
from tests.integration.test_labeling import shapes

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def labeled_elsewhere(workbench, monkeypatch, user: str, password: str, shown: str, tmp) -> None:
    """One item other than ``shown`` (a file name) labeled through Label Studio by ``user``
    from outside the widget, as another cell of the notebook does (this process's journal in
    ``tmp``: root never writes into the user's area)."""
    token = workbench.login_token(user, password)
    monkeypatch.setenv("HUBFORGE_SERVICE_URL", workbench.url + "services/hubforge/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("HUBFORGE_DATA", str(workbench.data_dir / "hdfs"))
    monkeypatch.setenv("HUBFORGE_USER_AREA", str(tmp))
    monkeypatch.delenv("HUBFORGE_LABEL_STUDIO_TOKEN", raising=False)
    monkeypatch.setattr(labeling_connection, "_credentials", None)
    project = labeling.open_project("keys")
    other = next(t for t in project.tasks(labeled=False) if shown not in str(t["data"]))
    project.annotate(other["id"], "circle")


def test_key_press_labels_the_item(workbench, page, tmp_path, monkeypatch):
    shapes(workbench.data_dir / "hdfs" / "datasets" / "keys", 4)
    try:
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
        # the item's file name, zoom (z or a click) and the shortcut card (?)
        assert re.fullmatch(r"00[0-3]\.png", page.inner_text(".hubforge-label .hf-name"))
        fitted = page.locator(".hubforge-label img.hf-item").bounding_box()["width"]
        page.keyboard.press("z")
        page.wait_for_selector(".hubforge-label img.hf-zoomed")
        assert page.locator(".hubforge-label img.hf-item").bounding_box()["width"] > 1.5 * fitted
        page.keyboard.press("z")
        page.wait_for_selector(".hubforge-label img.hf-item:not(.hf-zoomed)")
        page.keyboard.press("?")
        card = page.wait_for_selector(".hubforge-label .hf-help")
        assert "Enter" in card.inner_text() and "skip" in card.inner_text()
        assert "Backspace" in card.inner_text() and "back (undo)" in card.inner_text()
        page.click(".hubforge-label .hf-help-button")
        page.wait_for_selector(".hubforge-label .hf-help", state="detached")
        assert "1 / 4 labeled" in page.inner_text(".hubforge-label .hf-count")  # nothing labeled

        # a click on the image gives the widget the keys (it does not zoom); Backspace undoes
        page.locator(".hubforge-label").evaluate("el => el.blur()")  # keys elsewhere first
        page.click(".hubforge-label img.hf-item")
        focused = "() => !!document.activeElement.closest('.hubforge-label')"
        assert page.evaluate(focused), "the click did not give the widget the keys"
        assert page.locator(".hubforge-label img.hf-zoomed").count() == 0
        page.keyboard.press("Backspace")
        page.wait_for_selector(".hubforge-label .hf-status:has-text('Label taken back')")
        page.wait_for_selector(".hubforge-label .hf-count:has-text('0 / 4 labeled')")
        assert page.get_attribute(".hubforge-label img.hf-item", "src") == first

        # the count is Label Studio's: an item labeled elsewhere (another cell) counts too
        shown = page.inner_text(".hubforge-label .hf-name")
        labeled_elsewhere(workbench, monkeypatch, "kira", "kira-password-1", shown, tmp_path)
        page.keyboard.press("1")
        page.wait_for_selector(".hubforge-label .hf-count:has-text('2 / 4 labeled')")
    finally:
        leave_nothing_running(workbench, "kira", password="kira-password-1")


def test_drag_draws_a_box_and_enter_saves_it(workbench, page, tmp_path):
    shapes(workbench.data_dir / "hdfs" / "datasets" / "drag", 2)
    try:
        login_and_start(page, workbench, "bea", "bea-password-1")
        source = (
            "from hubforge import labeling\n"
            "from hubforge.widgets import label\n"
            "project = labeling.create_project('drag', 'datasets/drag', ['circle', 'square'],\n"
            "                                  task='object-detection')\n"
            "label(project)"
        )
        put_file(page, workbench, "bea", "boxes.ipynb", code_notebook(source))
        open_and_run_first_cell(page, workbench, "bea", "boxes.ipynb")
        image = ".hubforge-label .hf-canvas img"
        page.wait_for_selector(image, timeout=120_000)
        page.wait_for_selector(".hubforge-label .hf-count:has-text('0 / 2 labeled')")
        page.click(".hubforge-label .hf-count")  # focus the widget
        page.keyboard.press("2")  # boxes get the second label
        page.wait_for_selector(".hubforge-label button.hf-current:has-text('square')")
        box = page.locator(image).bounding_box()
        page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.25 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
        page.mouse.up()
        page.wait_for_selector(".hubforge-label .hf-box span:has-text('1 square')")
        page.click(".hubforge-label .hf-count")
        page.keyboard.press("Enter")
        page.wait_for_selector(".hubforge-label .hf-count:has-text('1 / 2 labeled')")
        page.wait_for_selector(".hubforge-label .hf-status:has-text('Saved 1 box(es)')")

        # Label Studio holds the box where it was drawn (percent of the image)
        token = workbench.login_token("bea", "bea-password-1")
        creds = workbench.api("GET", "services/hubforge/api/labeling/credentials", token).json()
        with requests.Session() as ls:
            ls.headers["Authorization"] = f"Token {creds['token']}"
            projects = ls.get(creds["api_url"] + "/api/projects", timeout=30).json()["results"]
            (project,) = [p for p in projects if p["title"] == "drag"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                tasks = ls.get(
                    creds["api_url"] + "/api/tasks",
                    params={"project": project["id"], "fields": "all"},
                    timeout=30,
                ).json()["tasks"]
                done = [t for t in tasks if t["annotations"]]
                if done:
                    break
                time.sleep(0.5)
        (task,) = done
        (result,) = task["annotations"][0]["result"]
        value = result["value"]
        assert value["rectanglelabels"] == ["square"]
        assert value["x"] == pytest.approx(25, abs=2) and value["y"] == pytest.approx(25, abs=2)
        assert value["width"] == pytest.approx(50, abs=2)
        assert value["height"] == pytest.approx(25, abs=2)
    finally:
        leave_nothing_running(workbench, "bea", password="bea-password-1")
