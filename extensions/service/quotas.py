"""Per-user quotas the hubforge service keeps: concurrent jobs, GPUs (jobs and endpoints),
endpoints. A refusal says what is in use and what to stop. 0 means no limit, except for
jobs: ``Workbench.max_jobs_per_user`` = 0 (its default) means DEFAULT_JOBS_PER_USER."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..jobs.store import TERMINAL

# Active jobs (pending, running, restarting) one user may have when the workbench sets no
# limit: 20 submits at once must not start 20 jobs on a shared machine.
DEFAULT_JOBS_PER_USER = 8


class QuotaExceeded(Exception):
    status = 403


class TooManyJobs(QuotaExceeded):
    """The owner's active jobs are at their limit: wait for one or cancel one."""

    status = 429


class Quotas:
    def __init__(self, jobs: int = 0, gpus: int = 0, endpoints: int = 0):
        self.jobs, self.gpus, self.endpoints = jobs, gpus, endpoints

    @classmethod
    def from_workbench(cls, workbench: Any) -> Quotas:
        return cls(
            workbench.max_jobs_per_user or DEFAULT_JOBS_PER_USER,
            workbench.max_gpus_per_user,
            workbench.max_endpoints_per_user,
        )

    @staticmethod
    def _active_jobs(owner: str, jobs: Any) -> list[dict[str, Any]]:
        """Jobs not ended; one whose job.json is damaged counts while its processes run."""
        return [j for j in jobs.list(owner) if j["state"] not in TERMINAL or j.get("running")]

    @classmethod
    def _active_ids(cls, owner: str, jobs: Any) -> list[str]:
        """The backend's own count when it keeps one (JobBackend.active), else from its list."""
        if callable(getattr(jobs, "active", None)):
            return jobs.active(owner)
        return [j["id"] for j in cls._active_jobs(owner, jobs)]

    def jobs_refusal(self, count: int, names: list[str], what: str = "jobs running") -> str:
        """What a refused submit says: how many are active, the limit, what to do."""
        yours = f"; yours: {', '.join(names)}" if names else ""
        return (
            f"You have {count} {what} (limit {self.jobs}), counting pending, queued and "
            f"submitted ones: wait for one to finish or cancel one (`hubforge job cancel ID`"
            f"{yours}), then submit again. An admin can change the limit "
            "(c.Workbench.max_jobs_per_user)"
        )

    def gpus_in_use(self, owner: str, jobs: Any, endpoints: Any) -> int:
        """GPUs of active jobs (all workers) and running endpoints: each copy an endpoint may
        scale to holds its GPUs (records without ``replicas``: one copy)."""
        used = 0
        for job in self._active_jobs(owner, jobs):
            spec = job.get("spec", {})
            used += int(spec.get("workers", 1)) * int(spec.get("gpus_per_worker", 0))
        for ep in endpoints.list(owner):
            if ep.get("running"):
                copies = (ep.get("replicas") or {}).get("max") or 1
                used += int(ep.get("gpus", 0) or 0) * int(copies)
        return used

    def check_job(
        self, owner: str, gpus: int, jobs: Any, endpoints: Any, waiting: Iterable[str] = ()
    ) -> None:
        """``waiting``: the owner's jobs in the queue (they count as active)."""
        if self.jobs:
            active = [*self._active_ids(owner, jobs), *waiting]
            if len(active) >= self.jobs:
                raise TooManyJobs(self.jobs_refusal(len(active), active[:5]))
        self._check_gpus(owner, gpus, jobs, endpoints)

    def check_endpoint(self, owner: str, name: str, gpus: int, jobs: Any, endpoints: Any) -> None:
        mine = endpoints.list(owner)
        new = name not in {e["name"] for e in mine}
        if self.endpoints and new and len(mine) >= self.endpoints:
            raise QuotaExceeded(
                f"You have {len(mine)} endpoints (limit {self.endpoints}): undeploy one "
                f"(`hubforge serve undeploy NAME`) or add a version to an existing one"
            )
        self._check_gpus(owner, gpus, jobs, endpoints)

    def _check_gpus(self, owner: str, gpus: int, jobs: Any, endpoints: Any) -> None:
        if self.gpus and gpus:
            used = self.gpus_in_use(owner, jobs, endpoints)
            if used + gpus > self.gpus:
                raise QuotaExceeded(
                    f"This needs {gpus} GPUs; you use {used} of your {self.gpus} in jobs and "
                    "endpoints: stop some first, or ask for fewer"
                )
