"""Secrets never reach user code: a job and an endpoint started by the hubforge service get
an allow-listed environment, not the service's own (its hub token, Label Studio's secrets)."""

from __future__ import annotations

import contextlib
import json
import time

import psutil
import pytest

from hubforge.processes import MARKER
from tests.models import keras_model

pytestmark = pytest.mark.hub
SHOW_ENV = "import json, os\nprint('ENV' + json.dumps(dict(os.environ)))\n"


def secrets_of(workbench) -> list[str]:
    """Every secret value the service's own environment and state hold."""
    state = workbench.data_dir / "state"
    found = [(state / "service-token").read_text().strip()]
    ls = state / "label-studio-admin.json"
    if ls.exists():
        found += [v for k, v in json.loads(ls.read_text()).items() if k != "email"]
    return found


def test_a_job_sees_no_token_or_secret_of_the_service(workbench):
    token = workbench.create_user("bob")
    r = workbench.api(
        "POST",
        "services/hubforge/api/jobs",
        token,
        json={"script": SHOW_ENV, "spec": {"name": "env"}},
    )
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 180
    while (state := workbench.api("GET", f"services/hubforge/api/jobs/{job}", token).json())[
        "state"
    ] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["state"] == "succeeded", state
    log = workbench.api("GET", f"services/hubforge/api/jobs/{job}/logs/worker-0", token).json()
    env = json.loads(log["text"].split("ENV", 1)[1].splitlines()[0])
    assert not [k for k in env if k.startswith(("JUPYTERHUB_", "HUBFORGE_LS_", "HUBFORGE_LABEL"))]
    assert MARKER not in env and "HUBFORGE_CONFIG" not in env and "HUBFORGE_DIR" not in env
    for secret in secrets_of(workbench):
        assert secret not in log["text"]
    # what a job does need is there
    assert env["HUBFORGE_DATA"] == str(workbench.data_dir / "hdfs")
    assert env["HUBFORGE_USER_AREA"] == str(workbench.data_dir / "hdfs" / "users" / "bob")
    # one worker runs as the kernel does: no TF_CONFIG for a cluster of one
    assert env["HUBFORGE_JOB_ID"] == job and "TF_CONFIG" not in env


def test_an_endpoint_process_sees_no_token_or_secret_of_the_service(workbench):
    token = workbench.create_user("bob")
    export = keras_model(workbench.data_dir / "hdfs" / "users" / "bob" / "exports", 1)
    r = workbench.api(
        "POST",
        "services/hubforge/api/endpoints",
        token,
        json={"name": "envcheck", "model_dir": str(export)},
    )
    assert r.status_code == 201, r.text
    try:
        procs = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if "hubforge.serving.server" in cmd and "envcheck" in cmd:
                with contextlib.suppress(psutil.Error):
                    procs.append(proc.environ())
        (env,) = procs
        assert not [k for k in env if k.startswith(("JUPYTERHUB_", "HUBFORGE_LS_"))]
        values = "\n".join(env.values())
        for secret in secrets_of(workbench):
            assert secret not in values
        assert env[MARKER] == str(workbench.data_dir), "hubforge down still finds it"
    finally:
        workbench.api("DELETE", "services/hubforge/api/endpoints/envcheck", token)
