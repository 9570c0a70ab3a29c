"""Hub admins add users through the hubforge service; each logs in with their own password."""

from __future__ import annotations

import html
import re
import time

import pytest
import requests

pytestmark = pytest.mark.hub


def test_admin_adds_a_user_who_can_log_in(workbench):
    admin = workbench.admin_token()
    r = workbench.api("POST", "services/hubforge/api/users", admin, json={"name": "fay"})
    assert r.status_code == 201, r.text
    password = r.json()["password"]
    session = workbench.login("fay", password)
    assert session.get(workbench.url + "hub/spawn", timeout=30).status_code == 200

    r = workbench.api("POST", "services/hubforge/api/users/fay/password", admin)
    assert r.status_code == 200
    new = r.json()["password"]
    with pytest.raises(AssertionError, match="login of fay failed"):
        workbench.login("fay", password)
    workbench.login("fay", new)


def test_user_management_mistakes(workbench):
    admin = workbench.admin_token()
    users = "services/hubforge/api/users"
    workbench.api("POST", users, admin, json={"name": "gus"})
    r = workbench.api("POST", users, admin, json={"name": "gus"})
    assert r.status_code == 409 and "exists already" in r.json()["message"]
    r = workbench.api("POST", users, admin, json={"name": "Not A Name"})
    assert r.status_code == 400 and "Invalid user name" in r.json()["message"]
    r = workbench.api("POST", users, admin, json={"name": "hal", "admin": "yes"})
    assert r.status_code == 400 and "'admin' must be true or false" in r.json()["message"]
    r = workbench.api("POST", users, admin, data="{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = workbench.api("POST", "services/hubforge/api/users/nobody/password", admin)
    assert r.status_code == 404 and "hubforge users add nobody" in r.json()["message"]


def test_only_admins_manage_users(workbench):
    ivy = workbench.create_user("ivy")
    r = workbench.api("POST", "services/hubforge/api/users", ivy, json={"name": "eve"})
    assert r.status_code == 403 and "Only hub admins" in r.json()["message"]
    r = workbench.api("POST", "services/hubforge/api/users/admin/password", ivy)
    assert r.status_code == 403
    r = workbench.api("POST", "services/hubforge/api/users", json={"name": "eve"})
    assert r.status_code == 403


def test_wrong_password_is_refused(workbench):
    with pytest.raises(AssertionError, match="login of admin failed"):
        workbench.login("admin", "definitely-wrong")


def test_spawn_page_shows_profiles_and_free_gpus(workbench):
    workbench.wait_gpus_free()  # nothing an earlier test left holds a GPU
    admin = workbench.admin_token()
    password = workbench.api(
        "POST", "services/hubforge/api/users", admin, json={"name": "joy"}
    ).json()["password"]
    session = workbench.login("joy", password)
    page = session.get(workbench.url + "hub/spawn", timeout=30).text
    assert "GPUs free now: 2 of 2" in page
    assert 'value="gpu-2" disabled' not in page
    # a card per profile: what it gives (CPU, memory, GPUs) and when an idle server stops
    cards = re.findall(r'value="([\w-]+)".*?<ul class="hubforge-facts">(.*?)</ul>', page)
    assert [(slug, re.findall(r"<li>(.*?)</li>", facts)) for slug, facts in cards] == [
        ("cpu", ["CPU: shared", "memory: shared", "0 GPUs"]),
        ("gpu-1", ["CPU: shared", "memory: shared", "1 GPU"]),
        ("gpu-2", ["CPU: shared", "memory: shared", "2 GPUs"]),
    ]
    idle = re.findall(r'value="([\w-]+)".*?hubforge-idle text-muted">([^<]+)<', page)
    assert idle == [
        ("cpu", "stops after 1 h idle"),
        ("gpu-1", "stops after 30 min idle"),
        ("gpu-2", "stops after 30 min idle"),
    ]

    holder = workbench.create_user("kim")
    try:
        assert workbench.spawn("kim", holder, profile="gpu-1").status_code in (201, 202)
        page = session.get(workbench.url + "hub/spawn", timeout=30).text
        assert "GPUs free now: 1 of 2" in page
        assert 'value="gpu-2" disabled' in page
        assert "only 1 GPU(s) free now" in page
    finally:
        workbench.ensure_stopped("kim")


def test_the_hub_pages_say_hubforge(workbench):
    """JupyterHub's pages with Hubforge's name and logo, and readable service names."""
    login = requests.get(workbench.url + "hub/login", timeout=30)
    assert login.status_code == 200
    assert "<title>Hubforge</title>" in login.text and 'id="hubforge-brand"' in login.text
    logo = requests.get(workbench.url + "hub/logo", timeout=30)
    assert logo.status_code == 200 and b"Hubforge" in logo.content
    assert logo.headers["Content-Type"].startswith("image/svg")
    session = workbench.login("admin", workbench.admin_password)
    home = session.get(workbench.url + "hub/home", timeout=30).text
    assert ">Label Studio</a>" in home and ">label-studio</a>" not in home


def test_guessing_a_password_is_slowed_for_that_name_only(workbench):
    """Through the real hub and proxy: after 10 failures each try for the name waits and a
    wrong one says so and what to do; the right password still signs kim in (a guesser cannot
    lock her out), and other users log in from the same address without waiting."""
    admin = workbench.admin_token()
    r = workbench.api("POST", "services/hubforge/api/users", admin, json={"name": "kim"})
    assert r.status_code == 201, r.text
    password = r.json()["password"]
    for _ in range(10):
        with pytest.raises(AssertionError, match="login of kim failed: 403"):
            workbench.login("kim", "a guess at it")
    s = requests.Session()
    s.get(workbench.url + "hub/login", timeout=30)
    form = {"username": "kim", "password": "another guess", "_xsrf": s.cookies.get("_xsrf")}
    started = time.monotonic()
    r = s.post(workbench.url + "hub/login", data=form, allow_redirects=False, timeout=30)
    assert r.status_code == 429 and time.monotonic() - started >= 1
    page = html.unescape(r.text)
    assert "Too many failed logins for the user name kim: each try now waits" in page
    assert "hubforge users reset-password" in page
    form = {"username": "kim", "password": password, "_xsrf": s.cookies.get("_xsrf")}
    r = s.post(workbench.url + "hub/login", data=form, allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    workbench.login("admin", workbench.admin_password)


def test_users_made_with_the_cli_are_on_the_admin_page_before_they_log_in(workbench):
    from tests.workbench import hubforge

    done = hubforge("users", "add", "cliona", data_dir=workbench.data_dir)
    assert done.returncode == 0, done.stderr
    done = hubforge("users", "add", "clifford", "--admin", data_dir=workbench.data_dir)
    assert done.returncode == 0, done.stderr
    admin = workbench.admin_token()
    deadline = time.monotonic() + 60
    while (r := workbench.api("GET", "hub/api/users/clifford", admin)).status_code != 200:
        assert time.monotonic() < deadline, f"clifford is not a hub user: {r.status_code} {r.text}"
        time.sleep(0.5)
    r = workbench.api("GET", "hub/api/users/cliona", admin)
    assert r.status_code == 200 and r.json()["last_activity"] is None, r.text  # never logged in
    # what the Admin page lists (it reads the same API)
    listed = workbench.api("GET", "hub/api/users?limit=200", admin).json()
    assert {"cliona", "clifford"} <= {u["name"] for u in listed}
    # made as plain users (only an admin makes admins): clifford is one from her first login on
    password = done.stdout.rsplit(": ", 1)[1].strip()
    workbench.login("clifford", password)
    assert workbench.api("GET", "hub/api/users/clifford", admin).json()["admin"] is True
