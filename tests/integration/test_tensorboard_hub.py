"""Real TensorBoard behind jupyter-server-proxy in a user's server, through the hub."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.kernel import execute
from tests.logs import write_logs

pytestmark = pytest.mark.hub
API = "user/tina/hubforge/api/tensorboards"


@pytest.fixture(scope="module")
def tina(workbench):
    token = workbench.create_user("tina")
    assert workbench.spawn("tina", token).status_code in (201, 202)
    home = workbench.data_dir / "homes" / "tina"
    write_logs(home / "runs" / "a")
    write_logs(home / "runs" / "b")
    yield token
    workbench.ensure_stopped("tina")  # whatever a failing test left it in


def through_proxy(workbench, url: str, token: str | None, **kw) -> requests.Response:
    """GET a host-relative URL (as the dashboard in a browser would) through the hub."""
    origin = re.match(r"https?://[^/]+", workbench.url).group(0)
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(origin + url, headers=headers, timeout=60, **kw)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_open_serves_index_runs_and_scalars_through_the_hub(workbench, tina):
    r = workbench.api("POST", API, tina, json={"logdir": "runs/a"})
    assert r.status_code == 201, r.text
    tb = r.json()
    prefix = f"/hub@forge%20space/user/tina/proxy/absolute/{tb['port']}/"
    assert re.fullmatch(re.escape(prefix) + r"[\w-]{32}/", tb["url"]), tb["url"]
    index = through_proxy(workbench, tb["url"], tina)
    assert index.status_code == 200 and "<tb-webapp>" in index.text
    # its fonts, asked for beside the page (TensorBoard's own page asks at the site's root)
    fonts = re.findall(r"url\(([^)]*\.woff2)\)", index.text)
    assert fonts and not [f for f in fonts if f.startswith("/")], fonts[:3]
    font = through_proxy(workbench, tb["url"] + fonts[0], tina)
    assert font.status_code == 200 and font.content[:4] == b"wOF2", font.status_code
    runs = through_proxy(workbench, tb["url"] + "data/runs", tina)
    assert runs.json() == ["train"]
    scalars = through_proxy(
        workbench, tb["url"] + "data/plugin/scalars/scalars?run=train&tag=epoch_loss", tina
    )
    assert scalars.status_code == 200 and len(scalars.json()) == 3  # three epochs

    # Opening the same log dir again reuses the instance.
    again = workbench.api("POST", API, tina, json={"logdir": "runs/a"}).json()
    assert again["port"] == tb["port"]
    listed = workbench.api("GET", API, tina).json()["tensorboards"]
    assert [t["name"] for t in listed] == [tb["name"]]


def test_refused_without_token_or_with_another_users(workbench, tina):
    tb = workbench.api("POST", API, tina, json={"logdir": "runs/a"}).json()
    r = through_proxy(workbench, tb["url"] + "data/runs", None, allow_redirects=False)
    assert r.status_code in (302, 403) and "train" not in r.text
    other = workbench.create_user("uma")
    r = through_proxy(workbench, tb["url"] + "data/runs", other, allow_redirects=False)
    assert r.status_code == 403 and "train" not in r.text
    assert workbench.api("GET", API, other, allow_redirects=False).status_code == 403


def test_other_users_cannot_reach_the_process_on_loopback(workbench, tina):
    """Another user knows the port (ports are no secret on one machine) and even tina's
    server prefix; through his own server's proxy and straight on loopback TensorBoard
    answers nothing: the path ends in a key only tina's server knows."""
    # victor's server first: its start can take longer than the TensorBoard's idle timeout
    # (15 s here; the stop's CI: tina's was culled meanwhile, and her own call got 403
    # "Nothing listens")
    victor = workbench.create_user("victor-tb")
    try:
        assert workbench.spawn("victor-tb", victor).status_code in (201, 202)
        tb = workbench.api("POST", API, tina, json={"logdir": "runs/a"}).json()
        # tina looks at it: an earlier test's TensorBoard of runs/a (open answers it again)
        # may have been idle for most of the 15 s; her look starts the window afresh
        assert through_proxy(workbench, tb["url"] + "data/runs", tina).json() == ["train"]
        port = tb["port"]
        key = tb["url"].rstrip("/").rsplit("/", 1)[1]
        keyless = f"/hub@forge%20space/user/tina/proxy/absolute/{port}"
        for path in ("data/runs", f"{keyless}/data/runs", f"{keyless}/"):
            r = requests.get(f"http://127.0.0.1:{port}/{path.lstrip('/')}", timeout=30)
            assert r.status_code == 404 and "train" not in r.text, (path, r.status_code)
        # the key is in no process's command line (readable by every account)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert key.encode() not in cmdline, pid
        for path in ("data/runs", f"{keyless.lstrip('/')}/data/runs"):
            r = workbench.api("GET", f"user/victor-tb/proxy/{port}/{path}", victor)
            # 403: his server proxies only his own account's ports (isolation 'accounts');
            # 404: one account for all (isolation 'none'), and TensorBoard wants the key
            assert r.status_code in (403, 404) and "train" not in r.text, (path, r.status_code)
        # ... while it runs and answers tina (so his refusals were not for a TensorBoard gone)
        assert through_proxy(workbench, tb["url"] + "data/runs", tina).json() == ["train"]
    finally:
        workbench.ensure_stopped("victor-tb")


def test_compare_two_runs_and_stop(workbench, tina):
    r = workbench.api("POST", API, tina, json={"logdir": ["runs/a", "runs/b"], "name": "ab"})
    assert r.status_code == 201, r.text
    tb = r.json()
    runs = through_proxy(workbench, tb["url"] + "data/runs", tina).json()
    assert sorted(runs) == ["a/train", "b/train"]
    assert workbench.api("DELETE", f"{API}/ab", tina).status_code == 204
    assert not port_open(tb["port"])
    r = workbench.api("DELETE", f"{API}/ab", tina)
    assert r.status_code == 400 and "No TensorBoard 'ab'" in r.json()["message"]


def test_bad_input(workbench, tina):
    for body, message in [
        ({"logdir": "runs/missing"}, "does not exist yet"),
        ({"logdir": "/etc"}, "outside your areas"),
        ({}, '{"logdir"'),
    ]:
        r = workbench.api("POST", API, tina, json=body)
        assert r.status_code == 400, r.text
        assert message in r.json()["message"]


def test_percent_tensorboard_in_a_kernel_resolves_through_the_proxy(workbench, tina):
    outputs = execute(
        workbench,
        "tina",
        tina,
        "%load_ext tensorboard\n%tensorboard --logdir runs/b",
        shutdown=False,
    )
    try:
        html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        match = re.search(r'"(/hub@forge%20space/user/tina/proxy/\d+/)"', html)
        assert match, outputs
        assert through_proxy(workbench, match.group(1), tina).status_code == 200
        runs = through_proxy(workbench, match.group(1) + "data/runs", tina)
        assert runs.json() == ["train"]
    finally:
        workbench.api("DELETE", f"user/tina/api/kernels/{outputs.kernel_id}", tina)


def test_restart_restores_and_idle_stops(workbench, tina):
    tb = workbench.api("POST", API, tina, json={"logdir": "runs/b", "name": "keep"}).json()
    workbench.stop_server("tina", tina)
    assert not port_open(tb["port"]), "stopping the server stops its TensorBoards"
    assert workbench.spawn("tina", tina).status_code in (201, 202)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = workbench.api("GET", API, tina).json()["tensorboards"]
        if any(t["name"] == "keep" for t in listed):
            break
        time.sleep(0.5)
    restored = next(t for t in listed if t["name"] == "keep")
    assert restored["url"].split("/")[-2] == tb["url"].split("/")[-2]  # its key is kept
    assert through_proxy(workbench, restored["url"] + "data/runs", tina).json() == ["train"]
    looked = time.monotonic()

    # Opened again 8 s later (the sidebar's Open of a running one answers the same instance):
    # the open counts as a look. The culler looks every 3.75 s: had the open not counted, it
    # would be gone by the last look + 15 + 3.75 s; it is not.
    time.sleep(8)
    again = workbench.api("POST", API, tina, json={"logdir": "runs/b", "name": "keep"}).json()
    assert again["port"] == restored["port"], again
    while time.monotonic() < looked + 15 + 3.75 + 1:
        assert port_open(restored["port"]), "stopped although it was opened again"
        time.sleep(0.5)

    # Nobody looks at it: the culler stops it after the idle timeout (15 s in these tests).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and port_open(restored["port"]):
        time.sleep(1)
    assert not port_open(restored["port"])
    assert "keep" not in [t["name"] for t in workbench.api("GET", API, tina).json()["tensorboards"]]
    state = json.loads(
        (workbench.data_dir / "homes" / "tina" / ".hubforge" / "tensorboards.json").read_text()
    )
    assert "keep" not in state["instances"]
