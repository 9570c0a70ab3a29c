from __future__ import annotations

import pytest

from hubforge.gpus import GpuAllocator, NotEnoughGpus


def test_exclusive_allocation_and_release(tmp_path):
    alloc = GpuAllocator(["0", "1", "2"], tmp_path / "gpus.json")
    assert alloc.allocate("alice/", 2) == ["0", "1"]
    assert alloc.allocate("bob/", 1) == ["2"]
    with pytest.raises(NotEnoughGpus) as info:
        alloc.allocate("carol/", 1)
    assert "only 0 of 3 are free" in str(info.value)
    assert alloc.release("alice/") == ["0", "1"]
    assert alloc.allocate("carol/", 1) == ["0"]


def test_reallocating_an_owner_replaces_its_devices(tmp_path):
    alloc = GpuAllocator(["0", "1"], tmp_path / "gpus.json")
    alloc.allocate("alice/", 2)
    assert alloc.allocate("alice/", 1) == ["0"]
    assert alloc.free() == ["1"]


def test_failed_request_keeps_what_the_owner_had(tmp_path):
    alloc = GpuAllocator(["0", "1"], tmp_path / "gpus.json")
    alloc.allocate("alice/", 1)
    alloc.allocate("bob/", 1)
    with pytest.raises(NotEnoughGpus):
        alloc.allocate("alice/", 2)
    assert alloc.allocations() == {"alice/": ["0"], "bob/": ["1"]}


def test_state_survives_a_restart(tmp_path):
    GpuAllocator(["0", "1"], tmp_path / "gpus.json").allocate("alice/", 1)
    again = GpuAllocator(["0", "1"], tmp_path / "gpus.json")
    assert again.allocations() == {"alice/": ["0"]}
    assert (tmp_path / "gpus.json").stat().st_mode & 0o777 == 0o600
    # a device that left the inventory is forgotten
    assert GpuAllocator(["1"], tmp_path / "gpus.json").allocations() == {}


def test_negative_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        GpuAllocator(["0"], tmp_path / "g.json").allocate("a/", -1)


def test_a_users_allocations_include_their_jobs(tmp_path):
    alloc = GpuAllocator(["0", "1", "2"], tmp_path / "gpus.json")
    alloc.allocate("alice/", 1)
    alloc.allocate("job/alice/train-1", 1)
    alloc.allocate("job/bob/train-2", 1)
    assert alloc.allocations("alice") == {"alice/": ["0"], "job/alice/train-1": ["1"]}
    assert alloc.allocations("bob") == {"job/bob/train-2": ["2"]}
    assert alloc.allocations("job") == {}


def test_a_job_being_started_keeps_its_gpus_while_the_service_sweeps(tmp_path):
    """The sweep that gives back ended jobs' GPUs runs beside the queue's starts; a job whose
    supervisor is being started is not ended (CI once saw such a job's GPU taken back)."""
    from hubforge.jobs.errors import JobNotFound
    from hubforge.jobs.handlers import release_finished
    from hubforge.jobs.queue import LocalQueue
    from hubforge.jobs.spec import JobSpec

    alloc = GpuAllocator(["0"], tmp_path / "gpus.json")
    seen = {}

    class Jobs:
        local_devices = True
        records: dict = {}

        def get(self, user, job_id):
            if job_id not in self.records:
                raise JobNotFound(f"No job {job_id}")
            return self.records[job_id]

        def start_queued(self, user, job_id, devices):
            release_finished(self, alloc)  # the sweep, while this job is being started
            seen["during"] = alloc.allocations()
            self.records[job_id]["state"] = "running"

    jobs = Jobs()
    queue = LocalQueue(tmp_path / "queue.json", jobs, alloc)
    spec = JobSpec(name="train", gpus_per_worker=1)
    jobs.records["train-1"] = {"id": "train-1", "state": "queued"}
    queue.add(queue.request("alice", spec, "train-1"))
    assert queue.run_pass() == ["train-1"]
    assert seen["during"] == {"job/alice/train-1": ["0"]}
    release_finished(jobs, alloc)
    assert alloc.allocations() == {"job/alice/train-1": ["0"]}
    jobs.records["train-1"]["state"] = "succeeded"
    release_finished(jobs, alloc)
    assert alloc.allocations() == {}
    queue.run_pass()
    assert queue.running == {}
