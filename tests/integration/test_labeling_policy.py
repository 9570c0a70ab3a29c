"""Label Studio behind Hubforge's policy layer: bob, with his own real Label Studio token and
his own browser session, attacks alice's project every way Label Studio offers, and is refused;
alice's own work goes on."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

from hubforge import labeling
from hubforge.labeling import api
from tests.integration.test_labeling import as_user, shapes  # noqa: F401 (fixture)

pytestmark = pytest.mark.hub


def ls(workbench, token: str | None, method: str, path: str, **kw) -> requests.Response:
    headers = {"Authorization": f"Token {token}"} if token else {}
    url = workbench.url + "services/label-studio/" + path.lstrip("/")
    return requests.request(method, url, headers=headers, timeout=60, **kw)


@pytest.fixture
def alice_and_bob(workbench, as_user):  # noqa: F811
    as_user("pol-alice")
    folder = workbench.data_dir / "hdfs" / "users" / "pol-alice" / "pictures"
    shapes(folder, 4)
    project = labeling.create_project("alice private", str(folder), ["circle", "square"])
    labeled = project.tasks(labeled=True)  # the project outlives one test: label once
    if not labeled:
        project.annotate(project.next_item()["id"], "circle")
        labeled = project.tasks(labeled=True)
    item = labeled[0]
    alice = api.credentials()
    annotation = item["annotations"][0]["id"]
    as_user("pol-bob")
    bob = api.credentials()
    return project, alice, bob, item, annotation


def test_bobs_token_reaches_nothing_of_alices_project(workbench, alice_and_bob):
    project, alice, bob, item, annotation = alice_and_bob
    pid, tid, b = project.id, item["id"], bob["token"]
    image = item["data"]["image"].split("?d=", 1)[1]
    attacks = [
        ("GET", f"api/projects/{pid}/", {}),
        ("GET", f"api/tasks/?project={pid}", {}),
        ("GET", "api/tasks/", {}),
        ("GET", f"api/tasks/{tid}/", {}),
        ("PATCH", f"api/tasks/{tid}/", {"json": {"data": {"image": "x"}}}),
        ("GET", f"api/annotations/{annotation}/", {}),
        ("PATCH", f"api/annotations/{annotation}/", {"json": {"result": []}}),
        ("DELETE", f"api/annotations/{annotation}/", {}),
        ("POST", f"api/tasks/{tid}/annotations/", {"json": {"result": []}}),
        ("GET", f"api/projects/{pid}/next", {}),
        ("GET", f"api/projects/{pid}/export?exportType=JSON", {}),
        ("POST", f"api/projects/{pid}/import", {"json": [{"image": "x"}]}),
        ("GET", f"api/storages/localfiles?project={pid}", {}),
        ("POST", "api/storages/localfiles", {"json": {"project": pid, "path": "/"}}),
        ("POST", "api/predictions/", {"json": {"task": tid, "result": []}}),
        ("GET", f"api/dm/views/?project={pid}", {}),
        ("GET", f"data/local-files/?d={image}", {}),
        ("GET", f"projects/{pid}/data", {}),
    ]
    for method, path, kw in attacks:
        r = ls(workbench, b, method, path, **kw)
        assert r.status_code in (403, 404), (method, path, r.status_code, r.text[:200])
        assert "circle" not in r.text and "pictures" not in r.text, (method, path)
    listed = ls(workbench, b, "GET", "api/projects/").json()
    assert pid not in [p["id"] for p in listed.get("results", listed)]
    # the account list shows bob's own organisation only: no e-mail of alice's
    users = ls(workbench, b, "GET", "api/users/")
    assert users.status_code == 200, users.text
    rows = users.json()
    emails = {u["email"] for u in (rows["results"] if isinstance(rows, dict) else rows)}
    assert emails == {bob["email"]} and alice["email"] not in users.text, emails
    whoami = ls(workbench, b, "GET", "api/current-user/whoami")
    assert whoami.status_code == 200 and whoami.json()["email"] == bob["email"]
    # every answer, refused or not, went through the policy (its timing says so)
    refused = ls(workbench, b, "GET", f"api/tasks/{tid}/")
    for r in (whoami, users, refused):
        assert r.headers.get("Server-Timing", "").startswith("hubforge-policy;dur="), r.headers
    # nothing of alice's changed
    task = ls(workbench, alice["token"], "GET", f"api/tasks/{tid}/").json()
    assert task["data"]["image"] == item["data"]["image"]
    assert [a["id"] for a in task["annotations"]] == [a["id"] for a in item["annotations"]]
    assert annotation in [a["id"] for a in task["annotations"]]
    assert task["annotations"][0]["result"][0]["value"]["choices"] == ["circle"]


def test_alice_still_works_and_storages_come_only_from_the_service(
    workbench,
    alice_and_bob,
    as_user,  # noqa: F811
):
    project, alice, _, item, _ = alice_and_bob
    a = alice["token"]
    assert ls(workbench, a, "GET", f"api/tasks/{item['id']}/").status_code == 200
    image = item["data"]["image"].split("?d=", 1)[1]
    r = ls(workbench, a, "GET", f"data/local-files/?d={image}")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    # even alice's token may not make a storage itself (it would serve any folder)
    body = {"project": project.id, "path": str(workbench.data_dir / "state")}
    assert ls(workbench, a, "POST", "api/storages/localfiles", json=body).status_code == 403
    # the service makes them, only in her area or datasets/
    service = workbench.url + "services/hubforge/api/labeling/storages"
    token = as_user("pol-alice")
    for folder in (workbench.data_dir / "state", workbench.data_dir / "hdfs" / "users" / "pol-bob"):
        r = requests.post(
            service,
            json={"project": project.id, "folders": [str(folder)]},
            headers={"Authorization": f"token {token}"},
            timeout=60,
        )
        assert r.status_code == 403 and "outside" in r.json()["message"], r.text
    # bob may not add a storage to alice's project, even one in his own area
    bob_token = as_user("pol-bob")
    mine = workbench.data_dir / "hdfs" / "users" / "pol-bob"
    mine.mkdir(parents=True, exist_ok=True)
    r = requests.post(
        service,
        json={"project": project.id, "folders": [str(mine)]},
        headers={"Authorization": f"token {bob_token}"},
        timeout=60,
    )
    assert r.status_code == 403 and "not one of the projects you label" in r.json()["message"]


def test_a_link_out_of_a_storage_serves_nothing(workbench, alice_and_bob, as_user):  # noqa: F811
    """Alice's own storage folder holds a symlink to Label Studio's database: not served."""
    alice = alice_and_bob[1]
    folder = workbench.data_dir / "hdfs" / "users" / "pol-alice" / "pictures"
    database = next((workbench.data_dir / "label-studio").rglob("*.sqlite3"))
    link = folder / "db.png"
    if not link.is_symlink():
        os.symlink(database, link)
    relative = link.relative_to(workbench.data_dir / "hdfs")
    r = ls(workbench, alice["token"], "GET", f"data/local-files/?d={relative}")
    assert r.status_code in (403, 404) and b"SQLite" not in r.content
    # importing the folder again skips the link, with why
    as_user("pol-alice")
    project = alice_and_bob[0]
    report = project.import_items(str(folder))
    assert any("db.png (a link out of" in u for u in report.unsupported), report


def test_an_annotation_sent_twice_at_once_is_saved_once(workbench, alice_and_bob):
    """A retry that overtakes a slow first attempt (the journal's case): Label Studio gets
    both; one annotation is saved, both answers name it."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    project, alice = alice_and_bob[0], alice_and_bob[1]
    task = (project.next_item() or project.tasks(labeled=True)[-1])["id"]
    uid = f"hf{uuid.uuid4().hex[:16]}0"
    result = [
        {
            "id": uid,
            "from_name": "label",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": ["circle"]},
        }
    ]
    path = f"api/tasks/{task}/annotations/"
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: ls(workbench, alice["token"], "POST", path, json={"result": result}),
                range(4),
            )
        )
    assert [a.status_code for a in answers] == [201] * 4, [a.text[:200] for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    saved = ls(workbench, alice["token"], "GET", f"api/tasks/{task}/").json()["annotations"]
    assert [r["id"] for a in saved for r in a["result"]].count(uid) == 1


# -- the policy inside Django (N1, N4, N16) -------------------------------------------------
def _bob_storage(workbench, as_user):  # noqa: F811
    """Bob's own project over his own folder, which holds links out of it, as bob's kernel
    could make them: a folder link to the workbench's state, a file link to its secrets."""
    state = workbench.data_dir / "state"
    as_user("pol-bob")
    folder = workbench.data_dir / "hdfs" / "users" / "pol-bob" / "bimgs"
    if not (folder / "000.png").exists():
        shapes(folder, 2)
    for name, target in (("s", state), ("leak.png", state / "label-studio-admin.json")):
        if not (folder / name).is_symlink():
            os.symlink(target, folder / name)
    project = labeling.create_project("bob images", str(folder), ["circle", "square"])
    secret = json.loads((state / "label-studio-admin.json").read_text())["service_key"]
    return project, folder.relative_to(workbench.data_dir / "hdfs"), secret


def test_no_route_to_local_files_follows_a_link(workbench, alice_and_bob, as_user):  # noqa: F811
    """N1: the unanchored route (…/x/data/local-files/) reached Label Studio's own view past
    the policy, which followed bob's link (as root) to any file."""
    _, alice, bob, item, _ = alice_and_bob
    _, mine, secret = _bob_storage(workbench, as_user)
    b = bob["token"]
    wanted = [
        f"{mine}/s/label-studio-admin.json",  # a folder link inside his storage
        f"{mine}/leak.png",  # a file link inside his storage
        f"{mine}/../../../state/label-studio-admin.json",
        f"{mine}/./s/../s/label-studio-admin.json",
    ]
    for route in ("data/local-files/", "x/data/local-files/", "api/x/data/local-files/"):
        for d in wanted:
            r = ls(workbench, b, "GET", f"{route}?d={d}")
            assert r.status_code in (403, 404), (route, d, r.status_code)
            assert secret not in r.text and "service_key" not in r.text, (route, d)
        # alice's image through any route: not bob's
        theirs = item["data"]["image"].split("?d=", 1)[1]
        r = ls(workbench, b, "GET", f"{route}?d={theirs}")
        assert r.status_code in (403, 404) and r.content[:4] != b"\x89PNG", route
        # his own image still comes, whatever the route
        r = ls(workbench, b, "GET", f"{route}?d={mine}/000.png")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG", (route, r.text[:200])
    # alice's own image as before
    image = item["data"]["image"].split("?d=", 1)[1]
    r = ls(workbench, alice["token"], "GET", f"x/data/local-files/?d={image}")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"


def _session_of(workbench, email: str) -> str:
    """A Label Studio session of ``email``, through a sign-in link (the browser flow)."""
    import hashlib

    from hubforge.labeling.server import BIND_COOKIE, sign_login

    key = json.loads((workbench.data_dir / "state" / "label-studio-admin.json").read_text())
    nonce = "policy-test-nonce"
    bind = hashlib.sha256(nonce.encode()).hexdigest()
    prefix = "services/label-studio"
    url = f"{workbench.url}{prefix}/hubforge/login?" + sign_login(
        key["service_key"], email, "/projects/", ttl=30, bind=bind
    )
    r = requests.get(
        url, headers={"Cookie": f"{BIND_COOKIE}={nonce}"}, allow_redirects=False, timeout=60
    )
    assert r.status_code == 302, r.text
    return r.cookies["sessionid"]


def test_a_malformed_cookie_header_is_refused(workbench, alice_and_bob):
    """N4: `Cookie: junk; sessionid=…` made the policy see no credentials while Django
    still signed bob in."""
    project, alice, bob, item, _ = alice_and_bob
    session = _session_of(workbench, bob["email"])
    url = workbench.url + "services/label-studio/"
    good = requests.get(
        url + "api/current-user/whoami", headers={"Cookie": f"sessionid={session}"}, timeout=60
    )
    assert good.status_code == 200 and good.json()["email"] == bob["email"]
    for cookie in (
        f"junk; sessionid={session}",
        f"sessionid=nothing; sessionid={session}",
    ):
        headers = {"Cookie": cookie, "X-CSRFToken": "a" * 32}
        r = requests.get(url + f"api/tasks/?project={project.id}", headers=headers, timeout=60)
        assert r.status_code == 403 and "Cookie header" in r.json()["detail"], (cookie, r.text)
        assert "circle" not in r.text and "pictures" not in r.text
        body = {"project": project.id, "path": str(workbench.data_dir / "hdfs" / "users")}
        r = requests.post(url + "api/storages/localfiles", json=body, headers=headers, timeout=60)
        assert r.status_code == 403, (cookie, r.status_code, r.text[:200])
    # nothing was made: alice's project has only the storage the service made
    storages = ls(workbench, alice["token"], "GET", f"api/storages/localfiles?project={project.id}")
    assert [s["path"] for s in storages.json()] == [
        str(workbench.data_dir / "hdfs" / "users" / "pol-alice" / "pictures")
    ]
    # a token header Label Studio would read differently: refused too
    for header in (f"Token {bob['token']} extra", "Token", f"Bearer {bob['token']}"):
        r = requests.get(
            url + f"api/tasks/?project={project.id}",
            headers={"Authorization": header},
            timeout=60,
        )
        assert r.status_code == 403, (header, r.status_code)
    # the key Label Studio copies into Authorization (X-Api-Key) is the policy's too
    r = requests.get(
        url + f"api/tasks/{item['id']}/", headers={"X-Api-Key": bob["token"]}, timeout=60
    )
    assert r.status_code == 403 and "not in your projects" in r.text, r.text[:200]


def _db(workbench, query: str, *args) -> list:
    import sqlite3

    (database,) = (workbench.data_dir / "label-studio").rglob("label_studio.sqlite3")
    with sqlite3.connect(database) as db:
        return db.execute(query, args).fetchall()


def test_accounts_cannot_change_organisations_users_or_tokens(workbench, alice_and_bob):
    """N16: a non-staff account may not rename its organisation, read or reset its invite
    link, turn legacy tokens off, or make Label Studio users."""
    bob = alice_and_bob[2]
    b = bob["token"]
    me = ls(workbench, b, "GET", "api/current-user/whoami").json()
    org = me["active_organization"]
    title = _db(workbench, "select title from organization where id=?", org)[0][0]
    attacks = [
        ("PATCH", f"api/organizations/{org}", {"json": {"title": "renamed by teammate"}}),
        ("PUT", f"api/organizations/{org}", {"json": {"title": "renamed by teammate"}}),
        ("GET", "api/invite", {}),
        ("POST", "api/invite/reset-token", {}),
        ("POST", "api/jwt/settings", {"json": {"legacy_api_tokens_enabled": False}}),
        ("POST", "api/users/", {"json": {"email": "spy-pol@evil.example", "password": "x1"}}),
        ("POST", "api/users/", {"json": {"email": "n16-new@hubforge.local"}}),
        ("PATCH", f"api/users/{me['id']}/", {"json": {"active_organization": org + 1}}),
        ("GET", "admin/", {}),
        ("GET", "api/fsm/entities/task/1/history", {}),
    ]
    for method, path, kw in attacks:
        r = ls(workbench, b, method, path, **kw)
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
    assert _db(workbench, "select title from organization where id=?", org)[0][0] == title
    made = _db(
        workbench,
        "select email from htx_user where email in (?, ?)",
        "spy-pol@evil.example",
        "n16-new@hubforge.local",
    )
    assert made == []
    assert ls(workbench, b, "GET", "api/current-user/whoami").status_code == 200  # tokens on
    assert ls(workbench, b, "GET", "api/jwt/settings").status_code == 200  # reading is fine
    # his own name he may change
    r = ls(workbench, b, "PATCH", f"api/users/{me['id']}/", json={"first_name": "Bob"})
    assert r.status_code == 200, r.text


def test_an_account_hubforge_did_not_make_is_not_adopted(workbench):
    """N16: an account made through Label Studio's API (before a hub user ever labeled) is
    not handed to that hub user as theirs."""
    admin = json.loads((workbench.data_dir / "state" / "label-studio-admin.json").read_text())
    r = ls(
        workbench,
        admin["token"],
        "POST",
        "api/users/",
        json={"email": "eve16@hubforge.local", "username": "eve16"},
    )
    assert r.status_code == 201, r.text
    token = workbench.create_user("eve16")
    r = workbench.api("GET", "services/hubforge/api/labeling/credentials", token)
    assert r.status_code != 200 and "token" not in r.json(), r.text
    assert "did not make" in r.text


def test_versions_are_for_signed_in_accounts_and_name_no_hubforge_commit(workbench, alice_and_bob):
    """N17: Label Studio's version page told anyone Hubforge's git commit and message (the
    folder it ran in). Now an outsider gets 403, and an account sees no Hubforge commit."""
    _, _, bob, _, _ = alice_and_bob
    for path in ("version/", "api/version"):
        r = ls(workbench, None, "GET", path)
        assert r.status_code in (401, 403), (path, r.status_code, r.text[:200])
    r = ls(workbench, bob["token"], "GET", "version/")
    assert r.status_code == 200, r.text[:300]
    git = ["git", "-C", os.path.dirname(__file__), "rev-parse", "HEAD"]
    head = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    assert head and head not in r.text and head[:7] not in r.text


def test_label_studio_runs_as_its_own_account_and_cannot_read_the_state(workbench):
    """Privilege separation: with per-user accounts Label Studio is no root process. It runs
    as the workbench's ``hf<wb>_ls`` account, which cannot read state/ nor a user's area (the
    privileged helper opens a user's file as that user, see tests/unit/test_privileged.py)."""
    import psutil

    from hubforge import accounts
    from tests.workbench import isolated

    if not isolated():
        pytest.skip("this run keeps no per-user accounts (HUBFORGE_ISOLATION=none or not root)")
    mine = [
        p
        for p in psutil.process_iter(["cmdline", "uids", "username"])
        if "ls_main.py" in " ".join(p.info["cmdline"] or [])
        and str(workbench.data_dir) in (p.environ().get("LABEL_STUDIO_BASE_DATA_DIR") or "")
    ]
    assert mine, "Label Studio's process was not found"
    expected = accounts.service_account_name("ls", workbench.state_dir)
    assert {p.info["username"] for p in mine} == {expected}
    uid = mine[0].info["uids"].real
    assert uid != 0
    probe = subprocess.run(
        [
            "python3",
            "-c",
            "import sys\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n"
            "        open(path, 'rb').read(); print('READ', path)\n"
            "    except PermissionError:\n"
            "        print('denied')\n",
            str(workbench.state_dir / "service-token"),
            str(workbench.service_dir / "passwords.json"),
        ],
        capture_output=True,
        text=True,
        user=uid,
        cwd="/",
    )
    assert probe.stdout.split() == ["denied", "denied"], probe.stdout + probe.stderr


def test_form_and_multipart_bodies_are_checked_like_json(workbench, alice_and_bob, as_user):  # noqa: F811
    """A later review (R1): the policy read only JSON bodies, so bob, naming his own project
    in the query, put a prediction on alice's task and a task into her project with a form or
    multipart body. Every body Label Studio parses is checked now."""
    project, alice, bob, item, _ = alice_and_bob
    as_user("pol-bob")
    mine = labeling.create_project("bob form probe", ["a text"], ["x", "y"], "text-classification")
    result = json.dumps(
        [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["x"]}}]
    )
    b = bob["token"]
    url = workbench.url + "services/label-studio/"
    attempts = [
        ("predictions form", "api/predictions/", {"data": {"task": item["id"], "result": result}}),
        (
            "predictions multipart",
            "api/predictions/",
            {"files": {"task": (None, str(item["id"])), "result": (None, result)}},
        ),
        ("task form", "api/tasks/", {"data": {"project": project.id, "data": '{"text": "x"}'}}),
    ]
    for what, path, body in attempts:
        r = requests.post(
            f"{url}{path}?project={mine.id}",
            headers={"Authorization": f"Token {b}"},
            timeout=60,
            **body,
        )
        assert r.status_code == 403 and "not in your projects" in r.text, (what, r.text[:300])
    task = ls(workbench, alice["token"], "GET", f"api/tasks/{item['id']}/").json()
    assert task.get("predictions", []) == [] or all(
        p.get("model_version") != "bob" for p in task["predictions"]
    )
    listed = ls(workbench, alice["token"], "GET", f"api/tasks/?project={project.id}").json()
    tasks = listed.get("tasks", listed) if isinstance(listed, dict) else listed
    assert all(t["data"].get("text") != "x" for t in tasks)


def test_a_teammate_cannot_make_a_storage_over_the_owners_area(workbench, alice_and_bob, as_user):  # noqa: F811
    """A later review (R3): sharing a project let the teammate make a storage of the owner's
    whole area and read any file of it through Label Studio. A teammate may add datasets/
    folders only; the owner's area is the owner's to expose."""
    project, _, _, _, _ = alice_and_bob
    as_user("pol-alice")
    labeling.share("pol-bob")
    area = workbench.data_dir / "hdfs" / "users" / "pol-alice"
    bob_token = as_user("pol-bob")
    r = workbench.api(
        "POST",
        "services/hubforge/api/labeling/storages",
        bob_token,
        json={"project": project.id, "owner": "pol-alice", "folders": [str(area)]},
    )
    assert r.status_code in (400, 403) and "outside" in r.text, r.text
