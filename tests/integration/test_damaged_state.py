"""One damaged state file is reported with its path and what to do; the rest keeps working
and nothing is overwritten until a person decides."""

from __future__ import annotations

import json
import time

import pytest

from hubforge.atomic import DamagedStateFile, read_json
from hubforge.gpus import GpuAllocator
from hubforge.jobs.errors import JobError
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.store import JobStore
from tests.workbench import hubforge, service_dir, start_workbench


def finished_job(root, owner: str, job_id: str, created: float) -> JobStore:
    store = JobStore(root / "users" / owner / "jobs" / job_id)
    record = {
        "id": job_id,
        "owner": owner,
        "spec": {"name": job_id, "workers": 1, "gpus_per_worker": 0},
        "state": "succeeded",
        "reason": "",
        "restarts": 0,
        "replicas": {},
        "created": created,
        "updated": created,
        "supervisor": None,
        "backend": "local",
    }
    store.create(record, "print('hi')\n")
    return store


def truncate(path) -> bytes:
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    return path.read_bytes()


def test_read_json_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"users": {"ann"')
    with pytest.raises(DamagedStateFile) as e:
        read_json(path)
    assert str(path) in str(e.value) and f"mv {path} {path}.damaged" in str(e.value)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DamagedStateFile, match="damaged"):
        read_json(path)


def test_a_damaged_job_is_listed_as_damaged_and_the_others_as_they_are(tmp_path):
    root = tmp_path / "hdfs"
    good = finished_job(root, "ann", "good-1", time.time() - 60)
    bad = finished_job(root, "ann", "bad-1", time.time())
    damaged = truncate(bad.record_file)
    backend = LocalJobBackend(root)

    listed = {r["id"]: r for r in backend.list("ann")}
    assert listed["good-1"]["state"] == "succeeded"
    assert listed["bad-1"]["state"] == "damaged"
    assert str(bad.record_file) in listed["bad-1"]["reason"]
    with pytest.raises(JobError) as e:
        backend.get("ann", "bad-1")
    assert e.value.status == 409 and "job.json is damaged" in str(e.value)
    assert backend.get("ann", "good-1")["state"] == "succeeded"
    # stop_all goes past it (hubforge down stops the other jobs) and rewrites nothing
    assert backend.stop_all("test") == []
    assert bad.record_file.read_bytes() == damaged
    assert json.loads(good.record_file.read_text())["state"] == "succeeded"


def test_damaged_gpu_allocations_are_kept_aside_and_start_empty(tmp_path):
    state = tmp_path / "gpus.json"
    state.write_text('{"ann/": ["0"')
    allocator = GpuAllocator(["0", "1"], state)
    assert allocator.free() == ["0", "1"]
    (kept,) = tmp_path.glob("gpus.json.damaged-*")
    assert kept.read_text() == '{"ann/": ["0"'
    assert allocator.allocate("bob/", 1) == ["0"]


def test_cli_names_a_damaged_password_file_and_leaves_it(tmp_path):
    data = tmp_path / "wb"
    assert hubforge("users", "add", "ann", data_dir=data).returncode == 0
    passwords = service_dir(data) / "passwords.json"
    damaged = truncate(passwords)
    for args in (["users", "list"], ["users", "add", "bob"], ["up", "--port", "1"]):
        r = hubforge(*args, data_dir=data)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"{passwords} is damaged" in r.stderr and "Traceback" not in r.stderr
        assert passwords.read_bytes() == damaged
    assert not (data / "state" / "hubforge.json").exists(), "up started nothing"


@pytest.mark.hub
def test_service_starts_with_damaged_endpoint_records_and_keeps_them_aside(tmp_path):
    """Damaged endpoint records are kept aside and rebuilt from what runs (nothing here):
    the service answers, nobody gets a 503 (see test_endpoint_records.py for live ones)."""
    data = tmp_path / "wb"
    (data / "state").mkdir(parents=True)
    endpoints = data / "state" / "endpoints.json"
    endpoints.write_text('{"ann/clf": {"owner": "ann", "na')
    wb = start_workbench(data, base_url="/", config='c.Workbench.label_studio_python = ""\n')
    try:
        token = wb.create_user("ann")
        status = wb.api("GET", "services/hubforge/api/status", token)
        assert status.status_code == 200, status.text
        r = wb.api("GET", "services/hubforge/api/endpoints", token)
        assert r.status_code == 200 and r.json() == {"endpoints": []}, r.text
        (aside,) = service_dir(data).glob("endpoints.json.damaged-*")
        assert aside.read_text() == '{"ann/clf": {"owner": "ann", "na'
        r = wb.api(
            "POST",
            "services/hubforge/endpoints/ann/clf/v1/models/clf:predict",
            token,
            json={"instances": [[1]]},
        )
        assert r.status_code == 404 and "error" in r.json(), r.text
    finally:
        wb.down()
