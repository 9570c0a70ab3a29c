"""The local job queue (jobs.queue.LocalQueue) over the real local job backend: jobs that
ask for more GPUs than are free are kept as `queued` with their place and reason, start by
themselves in fair order when GPUs free up, can be cancelled while they wait, and the queue
outlives the service (issue #33). Jobs are short plain-Python scripts; no hub."""

from __future__ import annotations

import json
import time

import pytest

from hubforge.gpus import GpuAllocator
from hubforge.jobs.errors import JobError
from hubforge.jobs.handlers import release_finished
from hubforge.jobs.local import LocalJobBackend
from hubforge.jobs.queue import LocalQueue
from hubforge.jobs.spec import JobSpec
from tests.callers import wait_for

SLEEP = "import time\ntime.sleep({nap})\nprint('done')\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def bench(tmp_path):
    jobs = LocalJobBackend(tmp_path / "data")
    allocator = GpuAllocator(["0", "1"], tmp_path / "service" / "gpus.json")
    (tmp_path / "service").mkdir(exist_ok=True)
    clock = Clock()
    queue = LocalQueue(tmp_path / "service" / "queue.json", jobs, allocator, clock=clock)
    return jobs, allocator, queue, clock


def submit(jobs, queue, clock, owner: str, name: str, gpus: int = 1, nap=1, **spec) -> str:
    job_spec = JobSpec.from_dict({"name": name, "gpus_per_worker": gpus, **spec})
    job_id = f"{name}-{owner}"
    assert queue.admits(job_spec)
    request = queue.request(owner, job_spec, job_id)
    jobs.submit(owner, job_spec, SLEEP.format(nap=nap), job_id=job_id, queued=True)
    queue.add(request)
    clock.now += 1
    return job_id


def test_jobs_wait_for_gpus_in_fair_order_and_start_when_they_free_up(bench):
    jobs, allocator, queue, clock = bench
    a1 = submit(jobs, queue, clock, "ana", "one")
    a2 = submit(jobs, queue, clock, "ana", "two")
    a3 = submit(jobs, queue, clock, "ana", "three")
    b1 = submit(jobs, queue, clock, "bo", "one")  # later than all of ana's
    assert jobs.get("ana", a2)["state"] == "queued"

    started = queue.run_pass()
    # two GPUs: ana's first, then bo's (ana is charged for her pick), not ana's second
    assert started == [a1, b1]
    held = allocator.allocations()
    assert sorted(held) == [f"job/ana/{a1}", f"job/bo/{b1}"]
    assert sorted(d for ds in held.values() for d in ds) == ["0", "1"]  # none twice
    assert jobs.get("ana", a1)["spec"]["devices"] == held[f"job/ana/{a1}"]

    described = queue.describe(jobs.get("ana", a2))
    assert described["state"] == "queued"
    assert described["queue"] == {
        "position": 1,
        "reason": "waiting for 1 GPU (0 free); yours is next",
    }
    assert queue.describe(jobs.get("ana", a3))["queue"]["reason"].endswith("1 job ahead, all yours")

    # a waiting job is cancelled: it leaves the queue and never starts
    assert queue.forget("ana", a3)
    assert jobs.cancel("ana", a3)["state"] == "cancelled"

    # the running ones end; their GPUs go back and ana's second starts on one of them
    for owner, job in (("ana", a1), ("bo", b1)):
        wait_for(lambda o=owner, j=job: jobs.get(o, j)["state"] == "succeeded", 60, job)
    release_finished(jobs, allocator)
    assert queue.run_pass() == [a2]
    wait_for(lambda: jobs.get("ana", a2)["state"] == "succeeded", 60, a2)
    assert jobs.get("ana", a3)["state"] == "cancelled" and queue.waiting == []


def test_the_queue_and_its_order_outlive_the_service(bench, tmp_path):
    jobs, allocator, queue, clock = bench
    allocator.allocate("ana/", 2)  # a server holds both GPUs
    first = submit(jobs, queue, clock, "bo", "first", nap=0)
    second = submit(jobs, queue, clock, "cy", "second", nap=0)
    assert queue.run_pass() == []
    saved = json.loads((tmp_path / "service" / "queue.json").read_text())
    assert [r["id"] for r in saved["waiting"]] == [first, second]

    # the service restarts: a new queue from the same file, then the server stops
    again = LocalQueue(tmp_path / "service" / "queue.json", jobs, allocator, clock=clock)
    assert [r.id for r in again.waiting] == [first, second]
    assert again.positions()[second]["position"] == 2
    allocator.release("ana/")
    assert again.run_pass() == [first, second]
    assert jobs.resume_interrupted() == []  # queued jobs are the queue's, never resumed


def test_recent_use_puts_a_light_user_first(bench):
    jobs, allocator, queue, clock = bench
    allocator.allocate("srv/", 2)
    heavy = [submit(jobs, queue, clock, "heavy", f"h{i}", nap=0) for i in range(3)]
    light = submit(jobs, queue, clock, "light", "l0", nap=0)
    queue.usage.add("heavy", 3600.0, clock.now)  # an hour of one GPU lately
    order = sorted(queue.positions().items(), key=lambda kv: kv[1]["position"])
    assert [job for job, _ in order] == [light, *heavy]
    assert order[1][1]["reason"].endswith("1 job ahead, of light")


def test_a_job_cancelled_meanwhile_is_not_started(bench):
    jobs, allocator, queue, clock = bench
    job = submit(jobs, queue, clock, "ana", "gone")
    jobs.cancel("ana", job)  # cancelled, but (a crash between the two) still in the queue
    assert queue.run_pass() == []
    assert allocator.allocations() == {} and queue.waiting == []
    assert jobs.get("ana", job)["state"] == "cancelled"


def test_unknown_priority_and_cpu_jobs(bench, tmp_path):
    jobs, allocator, queue, clock = bench
    with pytest.raises(ValueError, match="use one of batch, interactive, normal"):
        queue.request("ana", JobSpec(name="x", gpus_per_worker=1, priority="urgent"), "x-1")
    with pytest.raises(JobError, match="priority=7"):
        JobSpec(name="x", priority=7).validate()
    # without a CPU slot limit, CPU-only jobs start at once, outside the queue
    assert not queue.admits(JobSpec(name="cpu"))
    slots = LocalQueue(tmp_path / "q2.json", jobs, allocator, cpu_slots=2, clock=clock)
    assert slots.admits(JobSpec(name="cpu"))
    first = submit(jobs, slots, clock, "ana", "cpu-a", gpus=0, workers=2, nap=5)
    second = submit(jobs, slots, clock, "bo", "cpu-b", gpus=0, nap=0)
    assert slots.run_pass() == [first]
    assert slots.positions()[second]["reason"].startswith("waiting for 1 CPU slot (")
    assert jobs.cancel("ana", first)["state"] == "cancelled"
    assert slots.run_pass() == [second]


CHECKPOINTED = """\
import os, pathlib, time
backup = pathlib.Path(os.environ["HUBFORGE_JOB_DIR"]) / "backup"
if backup.is_dir():
    print("resumed from", sorted(p.name for p in backup.iterdir()))
else:
    backup.mkdir()
    (backup / "ckpt-1").write_text("epoch 1")
    time.sleep(120)
"""


def test_a_higher_class_preempts_a_batch_job_that_resumes_from_its_checkpoint(tmp_path):
    jobs = LocalJobBackend(tmp_path / "data")
    allocator = GpuAllocator(["0"], tmp_path / "gpus.json")
    clock = Clock()
    queue = LocalQueue(tmp_path / "queue.json", jobs, allocator, clock=clock, preemption=True)

    def submit_script(owner, name, priority, script):
        spec = JobSpec(name=name, gpus_per_worker=1, priority=priority)
        jobs.submit(owner, spec, script, job_id=name, queued=True)
        queue.add(queue.request(owner, spec, name))
        clock.now += 1

    submit_script("bo", "nightly", "batch", CHECKPOINTED)
    assert queue.run_pass() == ["nightly"]
    backup = tmp_path / "data" / "users" / "bo" / "jobs" / "nightly" / "backup"
    wait_for(lambda: (backup / "ckpt-1").exists(), 60, "the batch job's checkpoint")

    # a normal job of ana's: bo's batch job is stopped and waits again, its GPU goes to ana
    submit_script("ana", "urgent", "normal", SLEEP.format(nap=1))
    assert queue.run_pass() == ["urgent"]
    record = jobs.get("bo", "nightly")
    assert record["state"] == "queued" and record["preempted"] == 1
    assert "preempted by a job of a higher priority" in record["reason"]
    assert allocator.allocations() == {"job/ana/urgent": ["0"]}
    assert queue.positions()["nightly"]["position"] == 1

    # ana's ends: bo's resumes from its checkpoint (no restart used) and succeeds
    wait_for(lambda: jobs.get("ana", "urgent")["state"] == "succeeded", 60, "ana's job")
    release_finished(jobs, allocator)
    assert queue.run_pass() == ["nightly"]
    wait_for(lambda: jobs.get("bo", "nightly")["state"] == "succeeded", 60, "bo's job")
    done = jobs.get("bo", "nightly")
    assert done["restarts"] == 0
    assert "resumed from ['ckpt-1']" in jobs.logs("bo", "nightly", "worker-0")[0]
    assert [h["event"] for h in done["history"]] == ["preempted by a job of a higher priority"]


def test_no_preemption_without_a_checkpoint_or_when_turned_off(tmp_path):
    jobs = LocalJobBackend(tmp_path / "data")
    allocator = GpuAllocator(["0"], tmp_path / "gpus.json")
    clock = Clock()
    for preemption, script in ((True, SLEEP.format(nap=30)), (False, CHECKPOINTED)):
        queue = LocalQueue(
            tmp_path / f"q-{preemption}.json", jobs, allocator, clock=clock, preemption=preemption
        )
        name = f"batch-{preemption}".lower()
        spec = JobSpec(name=name, gpus_per_worker=1, priority="batch")
        jobs.submit("bo", spec, script, job_id=name, queued=True)
        queue.add(queue.request("bo", spec, name))
        assert queue.run_pass() == [name]
        time.sleep(1.5)  # it runs (and writes its checkpoint when it has one)
        urgent = JobSpec(name=f"u-{name}", gpus_per_worker=1, priority="interactive")
        jobs.submit("ana", urgent, SLEEP.format(nap=0), job_id=urgent.name, queued=True)
        queue.add(queue.request("ana", urgent, urgent.name))
        assert queue.run_pass() == []
        assert jobs.get("bo", name)["state"] in ("pending", "running")
        jobs.cancel("bo", name)
        release_finished(jobs, allocator)
        assert queue.run_pass() == [urgent.name]
        wait_for(lambda n=urgent.name: jobs.get("ana", n)["state"] == "succeeded", 60, "ana's")
        release_finished(jobs, allocator)
        queue.run_pass()
