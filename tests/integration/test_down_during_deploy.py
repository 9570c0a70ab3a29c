"""`hubforge down` while a deploy runs (#30): the deploy answered 500 although the endpoint
was recorded and came back at the next `up`. Now a stopping service takes no new requests
and lets the ones that change something finish (within its keeper's grace): the deploy
answers what it did, and the endpoint it reported is there after the next `up`."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.test_service_faults import endpoint_processes, wait_for
from tests.models import keras_model
from tests.workbench import start_workbench

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]
CONFIG = 'c.Workbench.label_studio_python = ""\n'
API = "services/hubforge/api/endpoints"


def test_down_during_a_deploy_answers_what_the_deploy_did(tmp_path):
    data = tmp_path / "wb"
    wb = start_workbench(data, config=CONFIG)
    answer: dict = {}
    try:
        token = wb.create_user("dina")
        export = keras_model(data / "hdfs" / "users" / "dina" / "exports", 1, bias=1.0)

        def deploy() -> None:
            body = {"name": "clf", "model_dir": str(export)}
            try:
                answer["r"] = wb.api("POST", API, token, json=body)
            except OSError as e:
                answer["error"] = e

        caller = threading.Thread(target=deploy)
        caller.start()
        # the copy is made and the endpoint process starts loading: then `down`
        wait_for(lambda: endpoint_processes(wb, "clf"), 120, "the deploy's endpoint process")
    finally:
        done = wb.down()
    caller.join(timeout=120)
    assert done.returncode == 0, done.stderr
    assert "error" not in answer, answer
    r = answer["r"]
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "clf" and 1 in r.json()["versions"]

    wb = start_workbench(data, config=CONFIG)
    try:
        listed = wb.api("GET", API, token).json()["endpoints"]
        assert [(e["name"], e["versions"]) for e in listed] == [("clf", [1])], listed
        gateway = "services/hubforge/endpoints/dina/clf/v1/models/clf:predict"
        deadline = time.monotonic() + 120
        while (
            p := wb.api("POST", gateway, token, json={"instances": [[1, 2, 3, 4]]})
        ).status_code != 200:
            assert time.monotonic() < deadline, p.text
            time.sleep(0.5)
        assert p.json() == {"predictions": [[11.0]]}
    finally:
        wb.down()
