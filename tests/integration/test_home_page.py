"""The hub's home page lists the signed-in user's jobs, endpoints and labeling projects."""

from __future__ import annotations

import html
import re

import pytest

from hubforge import labeling
from hubforge.labeling import connection as labeling_connection
from tests.models import keras_model

pytestmark = pytest.mark.hub
OVERVIEW = "services/hubforge/api/users/{}/overview"


def password(workbench, name: str) -> str:
    admin = workbench.admin_token()
    r = workbench.api("POST", "services/hubforge/api/users", admin, json={"name": name})
    if r.status_code == 409:
        r = workbench.api("POST", f"services/hubforge/api/users/{name}/password", admin)
    assert r.status_code in (200, 201), r.text
    return r.json()["password"]


def home(workbench, session) -> str:
    r = session.get(workbench.url + "hub/home", timeout=60)
    assert r.status_code == 200, r.text[:500]
    return r.content.decode("utf-8")  # as the page's <meta charset> says (no charset header)


def test_home_lists_what_is_mine_and_nothing_of_anyone_else(workbench, monkeypatch):
    hana = workbench.login("hana", password(workbench, "hana"))
    hugo = workbench.login("hugo", password(workbench, "hugo"))
    page = home(workbench, hana)
    assert "Training jobs" in page and "No jobs yet" in page
    assert "No endpoints" in page and "No labeling projects" in page

    token = workbench.create_user("hana")
    r = workbench.api(
        "POST",
        "services/hubforge/api/jobs",
        token,
        json={"script": "print('hello')", "spec": {"name": "home-demo"}},
    )
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    export = keras_model(workbench.data_dir / "hdfs" / "users" / "hana" / "home-export", 1)
    r = workbench.api(
        "POST",
        "services/hubforge/api/endpoints",
        token,
        json={"name": "home-ep", "model_dir": str(export)},
    )
    assert r.status_code == 201, r.text
    try:
        # a labeling project, made as a kernel of hana's makes one
        monkeypatch.setenv("HUBFORGE_SERVICE_URL", workbench.url + "services/hubforge/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        monkeypatch.setenv("HUBFORGE_DATA", str(workbench.data_dir / "hdfs"))
        monkeypatch.setenv("HUBFORGE_USER_AREA", str(workbench.data_dir / "hdfs/users/hana"))
        monkeypatch.delenv("HUBFORGE_LABEL_STUDIO_TOKEN", raising=False)
        monkeypatch.setattr(labeling_connection, "_credentials", None)
        project = labeling.create_project(
            "home-reviews", ["fine", "awful", "so-so"], ["good", "bad"], task="text-classification"
        )
        project.annotate(project.next_item()["id"], "good")

        page = home(workbench, hana)
        row = re.search(rf'data-job="{job}">(.*?)</li>', page, re.S)
        assert row, page
        assert re.search(r"badge[^>]*>(pending|running|succeeded)<", row.group(1)), row.group(1)
        assert "1 worker ·" in row.group(1), row.group(1)
        row = re.search(r'data-endpoint="home-ep">(.*?)</li>', page, re.S)
        assert row and ">serving<" in row.group(1) and "versions 1" in row.group(1), page
        assert (
            "/services/hubforge/endpoints/hana/home-ep/v1/models/home-ep:predict"
            in html.unescape(row.group(1))
        )
        row = re.search(r'data-project="home-reviews">(.*?)</li>', page, re.S)
        assert row and "1/3 labeled" in row.group(1), page
        link = f"/user/hana/hubforge/labeling/open?next=/projects/{project.id}/data"
        assert link in html.unescape(row.group(1))
        assert 'aria-valuenow="33"' in row.group(1)

        # hugo's home shows none of it
        other = home(workbench, hugo)
        assert job not in other and "home-ep" not in other and "home-reviews" not in other
        assert "No jobs yet" in other
        # the overview route answers the hub (and admins) only, for any name
        for caller in (token, workbench.create_user("hugo")):
            r = workbench.api("GET", OVERVIEW.format("hana"), caller)
            assert r.status_code == 403, r.text
        assert workbench.api("GET", OVERVIEW.format("hana")).status_code == 403
        r = workbench.api("GET", OVERVIEW.format("hana"), workbench.admin_token())
        assert r.status_code == 200 and job in [j["id"] for j in r.json()["jobs"]]
        # admins see the team: hana's job and serving endpoint on her row; hana sees no team
        assert 'id="hubforge-team"' not in page
        admin = workbench.login("admin", workbench.admin_password)
        # more users than the hub lists in one page unless asked (50): every one has a row
        # (CI53: with other tests' users the team page showed the first 50, hana not among them)
        crowd = [f"crowd-{i:02d}" for i in range(60)]
        r = workbench.api(
            "POST", "hub/api/users", workbench.admin_token(), json={"usernames": crowd}
        )
        assert r.status_code == 201, r.text
        try:
            listed = workbench.api("GET", "services/hubforge/api/team", workbench.admin_token())
            names = [u["name"] for u in listed.json()["users"]]
            assert set(crowd) | {"hana", "hugo"} <= set(names) and names == sorted(names), names
        finally:
            for name in crowd:
                workbench.api("DELETE", f"hub/api/users/{name}", workbench.admin_token())
        team = home(workbench, admin)
        row = re.search(r'data-user="hana">(.*?)</tr>', team, re.S)
        assert row, team
        assert re.search(r"1 (pending|running|succeeded)", row.group(1)), row.group(1)
        assert "1 serving of 1" in row.group(1), row.group(1)
        assert re.search(r'data-user="hugo">.*?<td>—</td>\s*<td>—</td>', team, re.S), team
        assert re.search(r"GPUs: \d+ free of \d+", team), team
        # the queue's part (other tests' jobs may wait on this shared workbench)
        assert re.search(r'id="hubforge-team-queue(-empty">No job waits\.|")', team), team
        for caller in (token, None):
            r = workbench.api("GET", "services/hubforge/api/team", caller)
            assert r.status_code == 403, r.text
        # signed out: the login page, not the list
        r = workbench.api("GET", "hub/home", allow_redirects=False)
        assert r.status_code == 302 and "/hub/login" in r.headers["Location"]
    finally:
        workbench.api("DELETE", "services/hubforge/api/endpoints/home-ep", token)
