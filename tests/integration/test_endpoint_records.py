"""A damaged or lost ``endpoints.json`` never takes endpoints away: the records are rebuilt
from the running endpoint processes and their model folders, every user's endpoint keeps
answering, stays listed and can be undeployed, and no endpoint process is left orphaned."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psutil
import pytest
import requests

from hubforge.serving.local import LocalEndpointBackend
from tests.models import keras_model
from tests.workbench import service_dir, start_workbench

ROW = {"instances": [[1, 2, 3, 4]]}


def truncate(path: Path) -> bytes:
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    return path.read_bytes()


def endpoint_processes(root: Path) -> dict[int, str]:
    """pid -> model base path of every endpoint server serving a folder under ``root``."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "hubforge.serving.server" in cmd and "--model-base-path" in cmd:
            base = cmd[cmd.index("--model-base-path") + 1]
            if base.startswith(str(root) + "/"):
                found[proc.info["pid"]] = base
    return found


def stop(pids) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
            procs[-1].kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


def predict(backend: LocalEndpointBackend, owner: str) -> requests.Response:
    """A predict as the gateway sends it: where route() says, with the key it adds."""
    url, headers = backend.route(owner, "clf")
    return requests.post(url + "/v1/models/clf:predict", json=ROW, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """y = sum(x) + 1 and y = sum(x) + 2."""
    root = tmp_path_factory.mktemp("exports")
    return {"ann": keras_model(root / "ann", 1, bias=1.0), "bob": keras_model(root / "bob", 1, 2.0)}


@pytest.fixture
def deployed(tmp_path, exports):
    """ann's and bob's endpoint 'clf' (answers 11 and 12 to ROW), run by a backend."""
    root = tmp_path / "hdfs"
    backend = LocalEndpointBackend(root, tmp_path / "state" / "endpoints.json")
    for owner, export in exports.items():
        mine = shutil.copytree(export, backend.area(owner) / "exports" / "1")
        backend.deploy(owner, "clf", str(mine))
    yield backend
    stop(endpoint_processes(root))


def test_truncated_records_are_rebuilt_and_every_endpoint_keeps_answering(deployed):
    backend, root = deployed, deployed.data_root
    before = endpoint_processes(root)
    assert len(before) == 2
    damaged = truncate(backend.state_file)

    assert predict(backend, "ann").json() == {"predictions": [[11.0]]}
    assert predict(backend, "bob").json() == {"predictions": [[12.0]]}
    (ann,) = backend.list("ann")
    assert (ann["name"], ann["running"], ann["versions"]) == ("clf", True, [1])
    assert [e["name"] for e in backend.list("bob")] == ["clf"]
    # the damaged file is kept for a person to look at; the records are whole again
    (kept,) = backend.state_file.parent.glob("endpoints.json.damaged-*")
    assert kept.read_bytes() == damaged
    assert sorted(json.loads(backend.state_file.read_text())) == ["ann/clf", "bob/clf"]
    assert endpoint_processes(root) == before, "the endpoints were not restarted"

    # undeploy still stops the process: none is orphaned
    assert backend.undeploy("bob", "clf")["running"] is False
    assert list(endpoint_processes(root).values()) == [str(backend.area("ann") / "models/clf")]
    assert predict(backend, "ann").json() == {"predictions": [[11.0]]}
    backend.undeploy("ann", "clf")
    assert endpoint_processes(root) == {}


def test_an_endpoint_whose_process_died_is_restarted_from_its_model_folder(deployed):
    """bob's endpoint process is gone when the records are damaged: the damaged file still
    names it and its model folder has its versions, so it is started again."""
    root = deployed.data_root
    (bob,) = [p for p, base in endpoint_processes(root).items() if "/bob/" in base]
    process = psutil.Process(bob)
    process.kill()
    process.wait(timeout=10)  # (the same object: the pid may be reaped already, CI54)
    text = deployed.state_file.read_text()
    cut = text.index('"bob/clf"') + len('"bob/clf": {') + 5
    deployed.state_file.write_text(text[:cut])

    assert predict(deployed, "ann").json() == {"predictions": [[11.0]]}
    deadline = time.monotonic() + 180
    while True:  # bob's endpoint loads its model again
        try:
            if predict(deployed, "bob").status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "bob's endpoint did not come back"
        time.sleep(0.2)
    assert predict(deployed, "bob").json() == {"predictions": [[12.0]]}
    assert [(e["name"], e["running"]) for e in deployed.list("bob")] == [("clf", True)]
    assert bob not in endpoint_processes(root) and len(endpoint_processes(root)) == 2


def test_records_moved_aside_or_a_damaged_list_of_starting_deploys_are_no_obstacle(
    deployed, exports
):
    """What the old advice ('move it aside') did: a service that starts without the file
    adopts the running endpoints instead of leaving them running unlisted. Then a damaged
    list of starting deploys: the next service starts nothing twice and deploys anew."""
    before = endpoint_processes(deployed.data_root)
    deployed.state_file.rename(deployed.state_file.with_name("endpoints.json.damaged"))
    restarted = LocalEndpointBackend(deployed.data_root, deployed.state_file)

    assert restarted.restore() == [], "running endpoints are adopted, not started again"
    assert predict(restarted, "ann").json() == {"predictions": [[11.0]]}
    assert predict(restarted, "bob").json() == {"predictions": [[12.0]]}
    assert endpoint_processes(deployed.data_root) == before

    starting = deployed.state_file.with_name("endpoints-starting.json")
    starting.write_text('[{"pid": 1')
    again = LocalEndpointBackend(deployed.data_root, deployed.state_file)
    assert again.restore() == []
    assert endpoint_processes(deployed.data_root) == before
    # a new version deploys (the list of starting deploys is written afresh)
    export = shutil.copytree(exports["ann"], deployed.area("ann") / "exports" / "2")
    assert again.deploy("ann", "clf", str(export))["versions"] == [1, 2]
    assert predict(again, "ann").json() == {"predictions": [[11.0]]}
    (kept,) = starting.parent.glob("endpoints-starting.json.damaged-*")
    assert kept.read_text() == '[{"pid": 1'
    for owner in ("ann", "bob"):
        again.undeploy(owner, "clf")
    assert endpoint_processes(deployed.data_root) == {}


@pytest.mark.hub
def test_gateway_keeps_serving_every_user_with_truncated_records(tmp_path, exports):
    data = tmp_path / "wb"
    wb = start_workbench(data, base_url="/", config='c.Workbench.label_studio_python = ""\n')
    api, gateway = "services/hubforge/api/endpoints", "services/hubforge/endpoints"
    try:
        tokens = {owner: wb.create_user(owner) for owner in exports}
        for owner, export in exports.items():
            mine = data / "hdfs" / "users" / owner / "exports" / "1"
            shutil.copytree(export, mine)
            r = wb.api("POST", api, tokens[owner], json={"name": "clf", "model_dir": str(mine)})
            assert r.status_code == 201, r.text
        records = service_dir(data) / "endpoints.json"
        truncate(records)

        for owner, answer in (("ann", 11.0), ("bob", 12.0)):
            url = f"{gateway}/{owner}/clf/v1/models/clf:predict"
            r = wb.api("POST", url, tokens[owner], json=ROW)
            assert r.status_code == 200 and r.json() == {"predictions": [[answer]]}, r.text
            listed = wb.api("GET", api, tokens[owner]).json()["endpoints"]
            assert [(e["name"], e["running"]) for e in listed] == [("clf", True)]
        assert list(records.parent.glob("endpoints.json.damaged-*"))
        r = wb.api("DELETE", f"{api}/clf", tokens["bob"])
        assert r.status_code == 200, r.text
        assert list(endpoint_processes(data / "hdfs").values()) == [
            str(data / "hdfs" / "users" / "ann" / "models" / "clf")
        ]
    finally:
        wb.down()
    assert endpoint_processes(data / "hdfs") == {}
