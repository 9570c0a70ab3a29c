"""A running job whose job.json is damaged is still cancelled, and stopped by `hubforge down`:
the backend finds its processes in its own index, not in the owner's file. Real supervisor
and worker processes, job.json truncated as the fault review did."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from hubforge.jobs.errors import JobError, JobNotFound
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.spec import JobSpec
from hubforge.jobs.store import JobStore
from tests.callers import wait_for
from tests.workbench import hubforge

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_leftovers(pids: list[int]) -> None:
    """What a failed test left running: the job's process groups (cleanup)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def running_job(backend: LocalJobBackend, owner: str, started: list[int]) -> tuple[str, list[int]]:
    """A one-worker job that sleeps; (its id, its supervisor's and worker's pids)."""
    job_id = backend.submit(owner, JobSpec(name="sleeper"), SLEEPER)["id"]
    started.append(backend.get(owner, job_id)["supervisor"]["pid"])

    def worker() -> int | None:
        record = backend.get(owner, job_id)
        pid = record["replicas"].get("worker-0", {}).get("pid")
        return pid if record["state"] == "running" and pid else None

    pids = [backend.get(owner, job_id)["supervisor"]["pid"], wait_for(worker, what="running")]
    assert all(alive(p) for p in pids)
    return job_id, pids


def ended_job(jobs: Path, job_id: str) -> None:
    """A one-worker job of the owner of ``jobs`` that succeeded: its folder and job.json."""
    record = {
        "id": job_id,
        "owner": jobs.parent.name,
        "state": "succeeded",
        "spec": {"workers": 1},
        "replicas": {},
        "restarts": 0,
        "created": 1.0,
        "updated": 1.0,
    }
    (jobs / job_id).mkdir(parents=True)
    (jobs / job_id / "job.json").write_text(json.dumps(record))


def truncate(path: Path) -> bytes:
    text = path.read_bytes()
    with open(path, "r+b") as f:  # in place: the owner's file stays the owner's
        f.truncate(len(text) // 2)
    return path.read_bytes()


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """No hub around: the local backend in this process, as the fault review ran it."""
    monkeypatch.setenv("HUBFORGE_DATA", str(tmp_path / "wb" / "hdfs"))
    monkeypatch.setenv("HUBFORGE_ISOLATION", "none")
    for var in ("HUBFORGE_SERVICE_URL", "JUPYTERHUB_API_TOKEN", "HUBFORGE_USER_AREA"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "wb" / "hdfs"


@pytest.fixture
def started() -> list[int]:
    """Supervisors the test started; their groups are killed if the test left them."""
    pids: list[int] = []
    yield pids
    kill_leftovers(pids)


def test_a_running_job_with_a_damaged_record_is_cancelled(data, started):
    backend, owner = LocalJobBackend(data), getpass.getuser()
    job_id, pids = running_job(backend, owner, started)
    record_file = data / "users" / owner / "jobs" / job_id / "job.json"
    truncate(record_file)

    listed = {r["id"]: r for r in backend.list(owner)}[job_id]
    assert listed["state"] == "damaged" and listed["running"] is True
    assert f"`hubforge job cancel {job_id}` stops it" in listed["reason"]
    with pytest.raises(JobError, match=r"job\.json is damaged.*The job still runs"):
        backend.get(owner, job_id)

    cancelled = backend.cancel(owner, job_id)
    assert cancelled["state"] == "cancelled", cancelled
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="processes to exit")
    # its supervisor wrote the record afresh from its own: the job reads as cancelled again
    record = backend.get(owner, job_id)
    assert record["state"] == "cancelled" and record["reason"] == "cancelled by the user"
    with pytest.raises(JobError, match="already cancelled"):
        backend.cancel(owner, job_id)


def test_down_stops_a_running_job_whose_record_is_damaged(data, started):
    backend, owner = LocalJobBackend(data), getpass.getuser()
    job_id, pids = running_job(backend, owner, started)
    truncate(data / "users" / owner / "jobs" / job_id / "job.json")

    result = hubforge("down", data_dir=data.parent)
    assert result.returncode == 0, result.stderr
    assert f"Stopped job(s): {job_id}" in result.stderr, result.stderr
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="processes to exit")
    record = backend.get(owner, job_id)
    assert record["state"] == "cancelled" and "hubforge down" in record["reason"]


def test_a_forged_supervisor_in_job_json_is_not_what_cancel_signals(data, started):
    """job.json naming another process: cancel stops the job's own supervisor, found in the
    index, leaves the named one alone and says job.json was changed by hand."""
    backend, owner = LocalJobBackend(data), getpass.getuser()
    job_id, pids = running_job(backend, owner, started)
    bystander = psutil.Popen(["sleep", "300"], start_new_session=True)
    try:
        store = backend.store(owner, job_id)
        forged = {"pid": bystander.pid, "create_time": bystander.create_time()}
        store.update(supervisor=forged)
        with pytest.raises(JobError, match="changed by hand") as refused:
            backend.cancel(owner, job_id)
        assert refused.value.status == 409 and f"Pid {bystander.pid} was not" in str(refused.value)
        assert backend.get(owner, job_id)["state"] == "cancelled"
        wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="processes to exit")
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
    assert not os.listdir(data / ".job-supervisors" / owner), "a cancelled job is forgotten"


def test_another_users_odd_records_never_stop_down_or_fill_memory(data, started):
    """Security review of the service's own account (2026-12-05, F2-F5): a job.json of the
    wrong shape answered 500 and made `down` leave every user's jobs running; a 1 GiB sparse
    job.json or progress.jsonl (no disk used) was read whole into the service's memory; a
    huge spec.workers made reading logs cost minutes. Now each is a damaged record of its
    owner's, read in bounded pieces, and `down` stops everyone's jobs all the same."""
    backend, owner = LocalJobBackend(data), getpass.getuser()
    job_id, pids = running_job(backend, owner, started)
    jobs = data / "users" / "mallory" / "jobs"
    odd = {
        "empty": "{}",
        "list": "[]",
        "nostate": '{"spec": {}}',
        "workers": '{"state": "running", "spec": {"workers": 3000000000}, "replicas": {}}',
        "supervisor": '{"state": "running", "spec": {}, "supervisor": "x", "restarts": 0}',
        "pid": '{"state": "running", "spec": {}, "supervisor": {"pid": -1, "create_time": 1}}',
        "huge": "",
    }
    for name, text in odd.items():
        (jobs / name).mkdir(parents=True)
        (jobs / name / "job.json").write_text(text)
    with open(jobs / "huge" / "job.json", "wb") as f:
        f.truncate(1 << 30)  # sparse: a gigabyte that costs no disk
    ended_job(jobs, "fine")
    with open(jobs / "fine" / "progress.jsonl", "wb") as f:
        f.truncate(1 << 30)
    # records the progress callback never writes, after the gigabyte (the tail is read)
    odd_lines = [
        "1",
        '{"event": "step"}',
        '{"event": "epoch_end", "epoch": [1]}',
        '{"event": "step", "epoch": 0, "step": 1, "metrics": {"loss": [1]}}',
        "[" * 100_000,
        '{"event": "epoch_end", "epoch": 0, "metrics": {"loss": 0.5}}',
    ]
    with open(jobs / "fine" / "progress.jsonl", "ab") as f:
        f.write(("\n" + "\n".join(odd_lines) + "\n").encode())

    me = psutil.Process()
    before = me.memory_info().rss
    listed = {r["id"]: r["state"] for r in backend.list("mallory")}
    assert listed == {**{name: "damaged" for name in odd}, "fine": "succeeded"}, listed
    assert backend.progress("mallory", "fine")["history"] == [{"epoch": 0, "loss": 0.5}]
    with pytest.raises(JobError) as refused:
        backend.logs("mallory", "workers", "worker-0")
    assert refused.value.status == 409
    assert me.memory_info().rss - before < 200 * 1024 * 1024, "a sparse file was read whole"

    result = hubforge("down", data_dir=data.parent)
    assert result.returncode == 0, result.stderr
    assert f"Stopped job(s): {job_id}" in result.stderr, result.stderr
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="processes to exit")


def test_a_job_folder_moved_away_under_a_read_is_not_found_not_an_error(data, monkeypatch):
    """The last stop's CI (test_isolation's link race): bob's jobs/ swapped between the job's
    record being found and being read answered 500 (FileNotFoundError). Logs of a job whose
    folder its owner moves away in that instant (an empty one in its place) answer
    JobNotFound (the handlers' 404) that says so; the folder moved away is untouched."""
    owner = "mallory"
    jobs = data / "users" / owner / "jobs"
    ended_job(jobs, "gone")
    (jobs / "gone" / "replicas").mkdir()
    (jobs / "gone" / "replicas" / "worker-0.log").write_text("epoch 1\n")
    backend = LocalJobBackend(data)
    assert backend.logs(owner, "gone", "worker-0") == ("epoch 1\n", 8)

    found = JobStore.exists

    def found_then_moved(store: JobStore) -> bool:  # the owner's swap, right after the check
        answer = found(store)
        (jobs / "gone").rename(data / "moved")
        (jobs / "gone").mkdir()
        return answer

    with monkeypatch.context() as patched, pytest.raises(JobNotFound, match="moved away"):
        patched.setattr(JobStore, "exists", found_then_moved)
        backend.logs(owner, "gone", "worker-0")
    assert (data / "moved" / "replicas" / "worker-0.log").read_text() == "epoch 1\n"
    assert not os.listdir(jobs / "gone")
