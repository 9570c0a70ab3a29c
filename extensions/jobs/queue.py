"""The local job queue (issue #33): jobs that ask for capacity wait here instead of being
refused, and start by themselves, in fair order (see fairshare), when it frees up.

The hubforge service owns one :class:`LocalQueue`. A submit that needs GPUs (or a CPU slot,
when ``Workbench.job_cpu_slots`` is set) writes the job's record as ``queued`` and adds a
request here; each :meth:`LocalQueue.run_pass` (after every submit, and every second) charges the
running jobs' use, hands GPUs to the jobs due to start and starts their supervisors. The
waiting requests, the running jobs it started and every owner's recent use are kept in the
service's own folder, written atomically: a restart of the service or the whole workbench
keeps the queue and its order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile, read_json, write_json
from ..gpus import GpuAllocator, NotEnoughGpus
from .errors import JobError, JobNotFound
from .fairshare import (
    DEFAULT_CLASSES,
    Capacity,
    PriorityClass,
    Request,
    Running,
    Usage,
    class_of,
    classes_from_config,
    ordered,
    preemptions,
    to_start,
    waiting_reasons,
)
from .spec import JobSpec
from .store import TERMINAL

log = logging.getLogger(__name__)

UNLIMITED = 1 << 30  # CPU slots when the workbench sets no limit
SAVE_USE_EVERY = 60.0  # seconds between writes of recent use alone


def gpu_owner(user: str, job_id: str) -> str:
    """The allocator's name for a job's GPUs."""
    return f"job/{user}/{job_id}"


class LocalQueue:
    """Waiting requests, the jobs the queue started, and recent use; thread-safe (passes run
    in the service's threads)."""

    def __init__(
        self,
        state_file: str | Path,
        jobs: Any,
        allocator: GpuAllocator,
        classes: Iterable[PriorityClass] = DEFAULT_CLASSES,
        cpu_slots: int = 0,
        clock: Callable[[], float] = time.time,
        preemption: bool = False,
    ):
        self.state_file = Path(state_file)
        self.jobs, self.allocator = jobs, allocator
        self.classes = tuple(classes)
        self.cpu_slots = cpu_slots
        self.clock = clock
        self.preemption = preemption  # higher classes may stop preemptible running jobs
        self.lock = threading.RLock()
        self.waiting: list[Request] = []
        self.running: dict[str, Running] = {}
        self.usage = Usage()
        self.charged_at = clock()
        self._saved_at = 0.0
        self._load()

    @classmethod
    def from_workbench(cls, workbench: Any, jobs: Any, allocator: GpuAllocator) -> LocalQueue:
        return cls(
            workbench.service_dir / "queue.json",
            jobs,
            allocator,
            classes=classes_from_config(workbench.priority_classes),
            cpu_slots=workbench.job_cpu_slots,
            preemption=workbench.job_preemption,
        )

    # -- what waits ---------------------------------------------------------------------
    def admits(self, spec: JobSpec) -> bool:
        """Whether a job of ``spec`` goes through the queue: it asks for GPUs this machine
        hands out, or CPU slots are limited."""
        if not getattr(self.jobs, "local_devices", False):  # a cluster's queue (Kueue) decides
            return False
        return bool(self.cpu_slots or spec.workers * spec.gpus_per_worker)

    def request(self, owner: str, spec: JobSpec, job_id: str) -> Request:
        class_of(spec.priority, self.classes)  # UnknownPriority names the classes there are
        return Request(
            id=job_id,
            owner=owner,
            gpus=spec.workers * spec.gpus_per_worker,
            cpus=spec.workers,
            priority=spec.priority,
            submitted=self.clock(),
        )

    def add(self, request: Request) -> None:
        with self.lock:
            self.waiting = [r for r in self.waiting if r.id != request.id] + [request]
            self._save()

    def forget(self, owner: str, job_id: str) -> bool:
        """Take a waiting job out (it is being cancelled); False when it does not wait."""
        with self.lock:
            kept = [r for r in self.waiting if not (r.owner == owner and r.id == job_id)]
            if len(kept) == len(self.waiting):
                return False
            self.waiting = kept
            self._save()
            return True

    def gpus_wanted(self) -> int:
        """GPUs the waiting jobs ask for (the GPU-aware culler frees idle servers' for them)."""
        with self.lock:
            return sum(r.gpus for r in self.waiting)

    def waiting_ids(self, owner: str) -> list[str]:
        with self.lock:
            return [r.id for r in self.waiting if r.owner == owner]

    def free(self) -> Capacity:
        with self.lock:
            used = sum(r.request.cpus for r in self.running.values())
            slots = self.cpu_slots - used if self.cpu_slots else UNLIMITED
            return Capacity(len(self.allocator.free()), max(0, slots))

    def positions(self) -> dict[str, dict[str, Any]]:
        """Each waiting job's place (1 = next) and why it waits, in words."""
        with self.lock:
            return waiting_reasons(
                self.waiting,
                self.free(),
                self.usage,
                self.classes,
                self.clock(),
                count_slots=bool(self.cpu_slots),
                running=self._now_running(),
            )

    def _now_running(self) -> list[Request]:
        return [job.request for job in self.running.values()]

    def snapshot(self, owner: str | None = None) -> list[dict[str, Any]]:
        """The waiting jobs in order (only ``owner``'s when given): id, owner, GPUs, CPU
        slots, priority, seconds waited, position and reason; for admins' views."""
        with self.lock:
            now = self.clock()
            places = self.positions()
            rows = [
                {
                    **_request_dict(r),
                    "waiting_s": round(max(0.0, now - r.submitted)),
                    **places.get(r.id, {"position": 0, "reason": "starting"}),
                }
                for r in self.waiting
                if owner is None or r.owner == owner
            ]
            return sorted(rows, key=lambda row: row["position"])

    def recent_use(self) -> dict[str, float]:
        """Each owner's recent use (GPU-seconds, decayed) as the queue weighs it now."""
        with self.lock:
            now = self.clock()
            return {o: round(self.usage.of(o, now)) for o in sorted(self.usage.values)}

    def describe(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with ``queue`` (position, reason) while it waits."""
        if record.get("state") == "queued":
            info = self.positions().get(record.get("id", ""))
            if info is not None:
                record = {**record, "queue": info, "reason": info["reason"]}
        return record

    # -- the pass -------------------------------------------------------------------------
    def run_pass(self) -> list[str]:
        """Charge use, forget jobs that ended, start the jobs due now; their ids."""
        with self.lock:
            now = self.clock()
            self.usage.charge(self.running.values(), self.charged_at, now)
            self.charged_at = now
            before = (len(self.waiting), len(self.running))
            self._forget_ended()
            started = self._start_due(now)
            if self.preemption and self._preempt(now):
                started += self._start_due(now)
            # written when jobs came or went; recent use at least once a minute while jobs
            # run (an idle workbench writes nothing every second)
            if (
                started
                or before != (len(self.waiting), len(self.running))
                or (self.running and now - self._saved_at >= SAVE_USE_EVERY)
            ):
                self._save()
            return started

    def _start_due(self, now: float) -> list[str]:
        due = to_start(
            self.waiting, self.free(), self.usage, self.classes, now, self._now_running()
        )
        return [request.id for request in due if self._start(request, now)]

    def _preempt(self, now: float) -> bool:
        """Make room for the next waiting job by stopping running jobs of a lower,
        preemptible class that have a checkpoint to resume from (most recently started
        first); they wait again with their first submit time. True when any was stopped."""
        waiting = ordered(self.waiting, self.usage, self.classes, now, self._now_running())
        if not waiting:
            return False
        first, free = waiting[0], self.free()
        if not preemptions(first, self.running.values(), free, self.classes):
            return False  # nothing lower to stop, or stopping all would not make room
        resumable = [
            job
            for job in self.running.values()
            if self.jobs.can_resume(job.request.owner, job.request.id)
        ]
        victims = preemptions(first, resumable, free, self.classes)
        for job in victims:
            owner, job_id = job.request.owner, job.request.id
            try:
                self.jobs.preempt(owner, job_id)
            except Exception as e:  # it ended meanwhile, its files are damaged: not this time
                log.warning("Job %s of %s not preempted: %s", job_id, owner, e)
                return False
            self.allocator.release(gpu_owner(owner, job_id))
            del self.running[job_id]
            self.waiting.append(job.request)
            log.info("Preempted job %s of %s for %s of %s", job_id, owner, first.id, first.owner)
        return bool(victims)

    def _start(self, request: Request, now: float) -> bool:
        holder = gpu_owner(request.owner, request.id)
        self.waiting = [r for r in self.waiting if r.id != request.id]
        devices: list[str] = []
        try:
            if request.gpus:
                devices = self.allocator.allocate(holder, request.gpus)
            self.jobs.start_queued(request.owner, request.id, devices)
        except NotEnoughGpus:  # a server took them meanwhile: wait on
            self.waiting.append(request)
            return False
        except (JobNotFound, JobError, OSError) as e:  # cancelled or gone meanwhile
            self.allocator.release(holder)
            log.warning("Queued job %s of %s not started: %s", request.id, request.owner, e)
            return False
        self.running[request.id] = Running(request, now)
        return True

    def _forget_ended(self) -> None:
        held = self.allocator.allocations()
        for job_id, job in list(self.running.items()):
            owner = job.request.owner
            if job.request.gpus:  # its GPUs go back when it ends (release_finished)
                ended = gpu_owner(owner, job_id) not in held
            else:
                try:
                    ended = self.jobs.get(owner, job_id)["state"] in TERMINAL
                except JobNotFound:
                    ended = True
                except Exception:  # unreadable right now: next pass
                    ended = False
            if ended:
                del self.running[job_id]

    # -- kept on disk -----------------------------------------------------------------------
    def _save(self) -> None:
        self._saved_at = self.clock()
        write_json(
            self.state_file,
            {
                "waiting": [_request_dict(r) for r in self.waiting],
                "running": [
                    {**_request_dict(j.request), "started": j.started}
                    for j in self.running.values()
                ],
                "usage": self.usage.to_dict(),
                "charged_at": self.charged_at,
            },
        )

    def _load(self) -> None:
        try:
            data = read_json(self.state_file, {}) or {}
        except DamagedStateFile as e:
            kept = self.state_file.with_name(f"{self.state_file.name}.damaged-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.state_file.rename(kept)
            log.error("%s It was moved to %s; the queue starts empty.", e, kept)
            return
        try:
            self.waiting = [_request(d) for d in data.get("waiting", [])]
            self.running = {
                d["id"]: Running(_request(d), float(d["started"])) for d in data.get("running", [])
            }
            self.usage = Usage.from_dict(data.get("usage") or {})
            self.charged_at = float(data.get("charged_at", self.clock()))
        except (KeyError, TypeError, ValueError) as e:
            log.error("Queue state %s unreadable (%s): it starts empty", self.state_file, e)
            self.waiting, self.running = [], {}


def _request_dict(request: Request) -> dict[str, Any]:
    return {
        "id": request.id,
        "owner": request.owner,
        "gpus": request.gpus,
        "cpus": request.cpus,
        "priority": request.priority,
        "submitted": request.submitted,
    }


def _request(data: dict[str, Any]) -> Request:
    return Request(
        id=str(data["id"]),
        owner=str(data["owner"]),
        gpus=int(data["gpus"]),
        cpus=int(data["cpus"]),
        priority=str(data["priority"]),
        submitted=float(data["submitted"]),
    )
