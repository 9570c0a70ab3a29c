"""The real hub, proxy and hubforge service on loopback, behind an awkward base URL."""

from __future__ import annotations

import re
import time

import pytest

from tests.workbench import isolated

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def alice(workbench):
    token = workbench.create_user("alice")
    r = workbench.spawn("alice", token, profile="cpu")
    assert r.status_code in (201, 202), r.text
    yield token
    workbench.ensure_stopped("alice")  # whatever a failing test left it in


def test_base_url_is_canonical(workbench):
    """'%40' is spelt '@' (as HTTP clients send it) and the space stays escaped."""
    assert workbench.url.endswith("/hub@forge%20space/")
    assert f"Hubforge is running at {workbench.url}" in workbench.log.read_text()
    r = workbench.api("GET", "hub/login")
    assert r.status_code == 200
    assert "/hub@forge%20space/hub/login" in r.text


def test_start_up_says_when_each_component_is_ready(workbench):
    """One line per component as it becomes ready, in start-up order, then the URL; Label
    Studio's port first ("listening"), and its API when it answers ("ready", #31: it said
    ready ~40 s before it stopped answering "starting")."""
    text = workbench.log.read_text()
    at = []
    for name, state in (
        ("hub", "ready"),
        ("jobs/serving", "ready"),
        ("Label Studio", "listening"),
        ("proxy routes", "ready"),
    ):
        found = re.search(rf"^  {re.escape(name)} +{state}  \( *\d+\.\d s\)$", text, re.M)
        assert found, f"no {state} line for {name}"
        at.append(found.start())
    assert at == sorted(at) and at[-1] < text.index("Hubforge is running at")
    deadline = time.monotonic() + 60
    ready = r"^  Label Studio +ready  \( *\d+\.\d s\)$"
    while not re.search(ready, workbench.log.read_text(), re.M):
        assert time.monotonic() < deadline, "no line says Label Studio's API answers"
        time.sleep(0.5)
    assert re.search(ready, workbench.log.read_text(), re.M).start() > at[2]


def test_extension_status_through_proxy(workbench, alice):
    r = workbench.api("GET", "user/alice/hubforge/api/status", alice)
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["user"] == "alice"
    assert status["profile"] == "cpu"
    assert status["gpus"] == []
    assert status["data"] == str(workbench.data_dir / "hdfs")
    # The extension reached the service with the server's own token.
    assert status["service"]["identity"]["name"] == "alice"


def test_service_status_through_proxy(workbench, alice):
    r = workbench.api("GET", "services/hubforge/api/status", alice)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identity"] == {"kind": "user", "name": "alice", "admin": False}
    assert body["gpus"]["total"] == 2
    r = workbench.api("GET", "services/hubforge/api/users/alice", alice)
    assert r.status_code == 200 and r.json()["name"] == "alice"


def test_no_token_is_refused(workbench, alice):
    r = workbench.api("GET", "services/hubforge/api/status")
    assert r.status_code == 403
    assert "token" in r.json()["message"]
    r = workbench.api("GET", "user/alice/hubforge/api/status", allow_redirects=False)
    assert r.status_code in (302, 403)
    if r.status_code == 302:  # a browser is sent to log in, never served
        assert "login" in r.headers["Location"] or "oauth" in r.headers["Location"]


def test_another_users_token_is_refused(workbench, alice):
    mallory = workbench.create_user("mallory")
    r = workbench.api("GET", "user/alice/hubforge/api/status", mallory, allow_redirects=False)
    assert r.status_code == 403
    r = workbench.api("GET", "services/hubforge/api/users/alice", mallory)
    assert r.status_code == 403
    assert "mallory may not read alice" in r.json()["message"]
    # and a user cannot hand out GPUs
    r = workbench.api(
        "POST", "services/hubforge/api/gpus", mallory, json={"owner": "x/", "count": 1}
    )
    assert r.status_code == 403


def test_server_environment(workbench, alice):
    """Home under the data folder, the data mount at HUBFORGE_DATA, tf_keras for kernels."""
    home = workbench.data_dir / "homes" / "alice"
    assert home.is_dir()
    if isolated():  # own area and datasets only
        area = (home / "hdfs" / "users" / "alice").resolve()
        assert area == (workbench.data_dir / "hdfs" / "users" / "alice").resolve()
    else:
        assert (home / "hdfs").resolve() == (workbench.data_dir / "hdfs").resolve()
    for sub in ("jobs", "models", "labeling"):
        assert (workbench.data_dir / "hdfs" / "users" / "alice" / sub).is_dir()
    # Jupyter's contents API shows the data folder inside the user's home.
    r = workbench.api("GET", "user/alice/api/contents/hdfs", alice)
    assert r.status_code == 200, r.text
    names = {item["name"] for item in r.json()["content"]}
    assert {"datasets", "users"} <= names


def test_unknown_profile_is_refused(workbench):
    token = workbench.create_user("olga")
    r = workbench.spawn("olga", token, profile="gpu-99")
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "No such profile: 'gpu-99'" in message
    assert "cpu, gpu-1, gpu-2" in message


def test_jupyter_server_proxy_is_on(workbench, alice):
    r = workbench.api("GET", "user/alice/server-proxy/servers-info", alice)
    assert r.status_code == 200, r.text
    assert "server_processes" in r.json()
