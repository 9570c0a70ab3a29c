"""Tuning runs through the hub (#34): the hubforge service keeps and drives them, each
trial is the owner's own job (quota, queue, per-user account), and nobody else sees,
changes or cancels them."""

from __future__ import annotations

import json

import nbformat
import pytest

from tests.callers import wait_for
from tests.integration.test_tuning_local import NOTEBOOK

pytestmark = pytest.mark.hub
TUNINGS = "services/hubforge/api/tunings"
SLOW = nbformat.v4.new_notebook(
    cells=[
        nbformat.v4.new_code_cell("x = 0.0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import time\ntime.sleep(300)"),
    ]
)


def body(nb, **extra) -> dict:
    return {"notebook": json.loads(nbformat.writes(nb)), "objective": "score", **extra}


def test_a_tuning_run_is_driven_by_the_service_and_is_its_owners_alone(workbench):
    tia, eve = workbench.create_user("tune-tia"), workbench.create_user("tune-eve")
    space = {"x": [1.0, 3.0, 5.0, 2.0]}
    r = workbench.api("POST", TUNINGS, tia, json=body(NOTEBOOK, space=space, max_trials=4))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["state"] == "running" and run["objective"]["direction"] == "max"
    path = f"{TUNINGS}/{run['id']}"
    for method in ("GET", "DELETE"):  # another user: as if it did not exist
        r = workbench.api(method, path, eve)
        assert r.status_code == 404 and "No tuning run" in r.json()["message"], r.text
    assert workbench.api("GET", TUNINGS, eve).json()["tunings"] == []
    assert workbench.api("GET", TUNINGS).status_code == 403  # no token

    done = wait_for(
        lambda: (d := workbench.api("GET", path, tia).json())["state"] != "running" and d,
        300,
        "the search to end",
    )
    assert done["state"] == "succeeded", done
    trials = {t["params"]["x"]: t for t in done["trials"]}
    assert sorted(trials) == [1.0, 2.0, 3.0, 5.0]
    assert done["best"] == trials[3.0]["id"] and trials[3.0]["objective"] == 0.0
    for trial in done["trials"]:  # each trial is tia's own job, which eve cannot see
        job = workbench.api("GET", f"services/hubforge/api/jobs/{trial['job']}", tia).json()
        assert job["state"] == "succeeded" and job["owner"] == "tune-tia"
        r = workbench.api("GET", f"services/hubforge/api/jobs/{trial['job']}", eve)
        assert r.status_code == 404


def test_cancelling_a_run_cancels_its_trials_and_bad_requests_say_what_to_change(workbench):
    cal = workbench.create_user("tune-cal")
    r = workbench.api(
        "POST", TUNINGS, cal, json=body(SLOW, space={"x": [1.0, 2.0, 3.0]}, max_trials=3)
    )
    assert r.status_code == 201, r.text
    path = f"{TUNINGS}/{r.json()['id']}"
    running = wait_for(
        lambda: d if len((d := workbench.api("GET", path, cal).json())["trials"]) == 2 else None,
        120,
        "two trials to start",
    )
    cancelled = workbench.api("DELETE", path, cal).json()
    assert cancelled["state"] == "cancelled"
    assert {t["state"] for t in cancelled["trials"]} == {"cancelled"}
    for trial in running["trials"]:
        job = workbench.api("GET", f"services/hubforge/api/jobs/{trial['job']}", cal).json()
        assert job["state"] == "cancelled", job

    for request, says in [
        ({"space": {"x": [1.0]}}, "'notebook' is the notebook's JSON"),
        (body(SLOW, space={"y": [1]}), "'y' is not a parameter of the notebook"),
        (body(SLOW, space={"x": [1.0]}, algorithm="grid"), "algorithm='grid'"),
        (body(SLOW, space={"x": [1.0]}, algorithm="hyperband"), "an `epochs = 10`"),
        (body(SLOW, space={"x": [1.0]}, spec="abc"), "'spec': an object"),
        (body(SLOW, space={"x": [1.0]}, spec={"workers": 99}), "workers=99"),
        (body(SLOW, space={"x": [1.0]}, spec={"priority": "oncall"}), "not yours to use"),
    ]:
        r = workbench.api("POST", TUNINGS, cal, json=request)
        assert r.status_code in (400, 403) and says in r.json()["message"], (request, r.text)
    listed = workbench.api("GET", TUNINGS, cal).json()["tunings"]
    assert [t["state"] for t in listed] == ["cancelled"]  # nothing recorded for a refusal
