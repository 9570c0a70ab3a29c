"""A job's first state change is never undone by the process that started it (CI60: a running
job read 'pending' until it ended, on a busy machine).

The starter used to record the supervisor in job.json just after spawning it, a
read-modify-write; when the supervisor's first write ('running', its replicas) landed between
that read and that write, 'pending' came back. Here the starter's store is made as slow as a
busy machine makes it: whatever it reads of job.json, it writes only after the supervisor has
written. With the service's index and without it (a kernel that runs jobs itself), the job
must read 'running' while its worker runs.
"""

from __future__ import annotations

import json
import time

import pytest

from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.spec import JobSpec
from hubforge.jobs.store import JobStore
from tests.callers import wait_for

SCRIPT = 'import time\nprint("working", flush=True)\ntime.sleep(60)\n'


def slow_starter(monkeypatch) -> list[str]:
    """JobStore.update in this process reads job.json, then waits (≤ 30 s) until the
    supervisor has written it before it writes what it read; the changes it wrote."""
    writes: list[str] = []

    def update_after_the_supervisor(self, **changes):
        before = self.read()
        first = json.loads(self.record_file.read_text())["updated"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if json.loads(self.record_file.read_text())["updated"] != first:
                break
            time.sleep(0.05)
        writes.append(",".join(sorted(changes)))
        self._write_json({**before, **changes, "updated": time.time()})
        return {**before, **changes}

    monkeypatch.setattr(JobStore, "update", update_after_the_supervisor)
    return writes


@pytest.mark.parametrize("index", ["service's index", "no index"])
def test_the_starter_never_undoes_the_supervisors_first_write(tmp_path, monkeypatch, index):
    data = tmp_path / "data"
    data.mkdir()
    # no index: its root is a file, so the index cannot be written (a kernel's view of a
    # shared workbench, where the service keeps the index)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    backend = LocalJobBackend(data, index_root=data if index == "service's index" else blocked)
    writes = slow_starter(monkeypatch)
    record = backend.submit("ana", JobSpec(name="slow"), SCRIPT)
    try:
        assert record["supervisor"]["pid"] > 0, record  # the answer names its supervisor
        wait_for(
            lambda: backend.get("ana", record["id"])["state"] == "running",
            60,
            "the job to read 'running'",
        )
        log = backend.store("ana", record["id"]).replica_log("worker-0")
        wait_for(lambda: log.exists() and "working" in log.read_text(), 60, "its worker")
        time.sleep(1)  # a late write of the starter's would have landed by now
        now = backend.get("ana", record["id"])
        assert now["state"] == "running" and now["replicas"], now
        assert writes == [], f"the starter wrote job.json after starting it: {writes}"
    finally:
        monkeypatch.undo()
        backend.cancel("ana", record["id"])
    assert backend.get("ana", record["id"])["state"] == "cancelled"
