"""Two users labeling one project at once: shared by its owner, never the same item."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from hubforge import labeling
from hubforge.labeling import api
from tests.integration.test_labeling import as_user  # noqa: F401 (fixture)

pytestmark = pytest.mark.hub


def test_teammates_share_a_project_and_never_get_the_same_item(
    workbench,
    as_user,  # noqa: F811
    monkeypatch,
):
    sam_token = as_user("sam")
    as_user("sally")
    texts = [f"review number {i}: {'great' if i % 2 else 'awful'}" for i in range(16)]
    sally_id = api.credentials()["id"]
    project = labeling.create_project("team reviews", texts, ["good", "bad"], "text-classification")
    sally_view = labeling.open_project("team reviews")

    # not shared yet: sam is refused with what to ask for
    as_user("sam")
    with pytest.raises(labeling.LabelingError, match=r"share\('sam'\)"):
        labeling.open_project("team reviews", owner="sally")

    as_user("sally")
    with pytest.raises(labeling.LabelingError, match="No hub user 'nobody-here'"):
        labeling.share("nobody-here")
    with pytest.raises(labeling.LabelingError, match="name a teammate"):
        labeling.share("sally")
    run = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "label", "share", "sam"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "Shared with: sam" in run.stdout, run.stderr
    assert labeling.share("sam") == ["sam"]  # twice is fine
    assert labeling.shares() == {"shared_with": ["sam"], "shared_with_me": []}

    as_user("sam")
    assert labeling.shares()["shared_with_me"] == ["sally"]
    sam_view = labeling.open_project("team reviews", owner="sally")
    run = subprocess.run(
        [sys.executable, "-m", "hubforge.cli", "label", "list", "--owner", "sally"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "team reviews" in run.stdout, run.stderr
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/sam/")  # as in his server
    assert sam_view.url == "/user/sam/hubforge/labeling/open?" + (
        f"next=/projects/{project.id}/data&owner=sally"
    )
    link = workbench.api(
        "GET",
        "services/hubforge/api/labeling/login-link?owner=sally&next=/projects/&bind=" + "c" * 64,
        sam_token,
    )
    assert link.status_code == 200, link.text
    assert "email=sam%2Bsally%40hubforge.local" in link.json()["url"]
    sam_account = api.credentials("sally")
    assert sam_account["email"] == "sam+sally@hubforge.local"
    assert sam_view.id == project.id
    assert [p.name for p in labeling.list_projects()] == []  # his own organisation is untouched

    # both ask for items at the same moment, eight times each: Label Studio's next-task lock
    def take(view):
        got = []
        for _ in range(8):
            item = view.next_item()
            got.append(item["id"])
            view.annotate(item["id"], "good" if "great" in item["data"]["text"] else "bad")
        return got

    with ThreadPoolExecutor(2) as pool:
        sally_items, sam_items = pool.map(take, [sally_view, sam_view])
    assert len(set(sally_items)) == 8 and len(set(sam_items)) == 8
    assert not set(sally_items) & set(sam_items)
    progress = sally_view.progress
    assert progress["labeled"] == 16 and progress["total"] == 16
    # annotations say who made them
    tasks = {t["id"]: t for t in json.loads(sally_view.export("JSON").read_text())}
    for task_id in sam_items:
        assert [a["completed_by"] for a in tasks[task_id]["annotations"]] == [sam_account["id"]]
    for task_id in sally_items:
        assert [a["completed_by"] for a in tasks[task_id]["annotations"]] == [sally_id]

    # stop sharing: sam's token for sally's projects stops working at once
    as_user("sally")
    assert labeling.unshare("sam") == []
    r = workbench.api("GET", "services/hubforge/api/labeling/credentials?owner=sally", sam_token)
    assert r.status_code == 403 and "share('sam')" in r.json()["message"]
    link = workbench.api(
        "GET",
        "services/hubforge/api/labeling/login-link?owner=sally&next=/projects/&bind=" + "c" * 64,
        sam_token,
    )
    assert link.status_code == 403
    with pytest.raises(httpx.HTTPStatusError) as refused:
        sam_view.next_item()
    assert refused.value.response.status_code == 401

    # sharing again gives sam back his account, even one made before Label Studio recorded
    # which accounts Hubforge made (an earlier version's: outside the hubforge-accounts
    # group); the service's own records vouch for it
    database = workbench.data_dir / "label-studio" / "label_studio.sqlite3"
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        removed = db.execute(
            "DELETE FROM htx_user_groups WHERE user_id = ?", (sam_account["id"],)
        ).rowcount
    assert removed == 1
    as_user("sally")
    assert labeling.share("sam") == ["sam"]
    as_user("sam")
    again = labeling.open_project("team reviews", owner="sally")
    assert again.progress["total"] == 16


def test_account_provisioning_refuses_everyone_but_the_service(workbench):
    """Label Studio's provisioning route is reachable through the hub's port: it must
    refuse callers without Hubforge's admin token."""
    url = "services/label-studio/hubforge/provision"
    body = {"email": "mallory@hubforge.local"}
    assert workbench.api("POST", url, json=body).status_code == 403
    forged = {"Authorization": "Hubforge not-the-token"}
    assert workbench.api("POST", url, json=body, headers=forged).status_code == 403
    assert workbench.api("GET", url).status_code == 405
    # a hub user's own token is no admin token either
    token = workbench.create_user("mallory")
    assert workbench.api("POST", url, token, json=body).status_code == 403
