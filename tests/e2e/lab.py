"""Browser helpers: log in through the hub's form, start a server, run a notebook cell."""

from __future__ import annotations

import json

from tests.workbench import hubforge


def login_and_start(page, workbench, user: str, password: str, profile: str = "cpu") -> None:
    r = hubforge(
        "users", "add", user, "--password-stdin", data_dir=workbench.data_dir, input=password + "\n"
    )
    assert r.returncode == 0, r.stderr
    page.goto(workbench.url + "hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_selector("#hubforge-profiles")
    page.check(f"input[name=profile][value={profile}]")
    page.click("button[type=submit]")
    page.wait_for_selector(".jp-Launcher", timeout=120_000)


def xsrf_of(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")


def put_file(page, workbench, user: str, name: str, model: dict) -> None:
    response = page.request.put(
        workbench.url + f"user/{user}/api/contents/{name}",
        data=json.dumps(model),
        headers={"X-XSRFToken": xsrf_of(page)},
    )
    assert response.ok, response.text()


def open_and_run_first_cell(page, workbench, user: str, name: str) -> None:
    page.goto(workbench.url + f"user/{user}/lab/tree/{name}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    # Run only once the kernel is connected and idle (the status bar says so).
    page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=120_000)
    page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor")
    page.keyboard.press("Shift+Enter")


def code_notebook(source: str) -> dict:
    return {
        "type": "notebook",
        "content": {
            "cells": [
                {
                    "cell_type": "code",
                    "metadata": {},
                    "outputs": [],
                    "execution_count": None,
                    "source": source,
                }
            ],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    }


def tab_walk(page, first: str, steps: int) -> list[str]:
    """The labels Tab reaches, from the element ``first`` on (``steps`` of them)."""
    page.focus(first)
    reached = []
    for _ in range(steps):
        reached.append(page.evaluate("document.activeElement.textContent"))
        page.keyboard.press("Tab")
    return reached
