"""Log in through the hub's form, pick a profile, land in JupyterLab."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.lab import code_notebook, open_and_run_first_cell, put_file
from tests.workbench import hubforge

pytestmark = [pytest.mark.browser, pytest.mark.hub]


def test_login_pick_profile_and_see_the_launcher(workbench, page, tmp_path):
    # HUBFORGE_SCREENSHOTS=docs/images refreshes the docs' pictures from this run
    shots = Path(os.environ.get("HUBFORGE_SCREENSHOTS") or tmp_path)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else 0)
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    r = hubforge(
        "users",
        "add",
        "erin",
        "--password-stdin",
        data_dir=workbench.data_dir,
        input="erin-password-1\n",
    )
    assert r.returncode == 0, r.stderr
    try:
        page.goto(workbench.url + "hub/login")
        # Hubforge's name, logo and what it is for, on JupyterHub's own login form
        assert "Label, train, watch and deploy" in page.inner_text("#hubforge-brand")
        assert page.title() == "Hubforge"
        page.screenshot(path=str(shots / "hub-login.png"))
        page.fill("#username_input", "erin")
        page.fill("#password_input", "erin-password-1")
        page.click("#login_submit")

        # The spawn page offers the configured profiles (two fake GPUs -> up to 2 GPUs).
        page.wait_for_selector("#hubforge-profiles")
        labels = page.locator(".hubforge-profile strong").all_inner_texts()
        assert labels == ["CPU", "1 GPU", "2 GPUs"]
        assert "GPUs free now: 2 of 2" in page.inner_text("#hubforge-gpus-free")
        page.locator("#hubforge-profiles").screenshot(path=str(shots / "hub-spawn.png"))
        page.check("input[name=profile][value=gpu-1]")
        page.click("button[type=submit]")

        page.wait_for_selector(".jp-Launcher", timeout=120_000)
        assert "/user/erin/lab" in page.url

        # The server the browser reached runs the chosen profile with one GPU handed out.
        response = page.request.get(workbench.url + "user/erin/hubforge/api/status")
        assert response.ok, response.text()
        status = json.loads(response.text())
        assert status["profile"] == "gpu-1"
        assert len(status["gpus"]) == 1

        # ipywidgets render in a real notebook, and the kernel runs with tf_keras selected.
        put_file(
            page,
            workbench,
            "erin",
            "widgets.ipynb",
            code_notebook(
                "import os, ipywidgets\n"
                "print('legacy keras:', os.environ['TF_USE_LEGACY_KERAS'])\n"
                "ipywidgets.IntSlider(value=7, description='epochs')"
            ),
        )
        open_and_run_first_cell(page, workbench, "erin", "widgets.ipynb")
        slider = page.wait_for_selector(".widget-slider", timeout=60_000)
        assert "epochs" in slider.inner_text()
        assert "legacy keras: 1" in page.locator(".jp-OutputArea-output").first.inner_text()
        # No news pop-up: the workbench has no Internet to fetch it from.
        assert page.locator("text=Would you like to get notified").count() == 0
        # the example series waits in erin's home (what the file browser lists)
        listing = page.request.get(workbench.url + "user/erin/api/contents/examples")
        assert listing.ok, listing.text()
        names = sorted(x["name"] for x in json.loads(listing.text())["content"])
        assert names[0] == "01-label.ipynb" and len(names) == 5, names

        # the hub's home: the server's buttons, then erin's jobs, endpoints, projects
        failed.clear()
        page.goto(workbench.url + "hub/home")
        page.wait_for_selector("#hubforge-home")
        for section in ("Training jobs", "Endpoints", "Labeling projects"):
            assert section in page.inner_text("#hubforge-home")
        assert "examples/02-train.ipynb" in page.inner_text("#hubforge-jobs")
        page.screenshot(path=str(shots / "hub-home.png"), full_page=True)
        assert failed == [], failed
    finally:
        workbench.ensure_stopped("erin")


def test_wrong_password_shows_the_hubs_error(workbench, page):
    page.goto(workbench.url + "hub/login")
    page.fill("#username_input", "admin")
    page.fill("#password_input", "not-the-password")
    page.click("#login_submit")
    error = page.wait_for_selector(".login_error")
    assert error.inner_text() == "Invalid username or password"
    assert "/hub/login" in page.url
