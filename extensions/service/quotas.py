"""Per-user quotas the hubforge service keeps: concurrent jobs, GPUs (jobs and endpoints),
endpoints. A refusal says what is in use and what to stop. 0 means no limit."""

from __future__ import annotations

from typing import Any

from ..jobs.store import TERMINAL


class QuotaExceeded(Exception):
    status = 403


class Quotas:
    def __init__(self, jobs: int = 0, gpus: int = 0, endpoints: int = 0):
        self.jobs, self.gpus, self.endpoints = jobs, gpus, endpoints

    @classmethod
    def from_workbench(cls, workbench: Any) -> Quotas:
        return cls(
            workbench.max_jobs_per_user,
            workbench.max_gpus_per_user,
            workbench.max_endpoints_per_user,
        )

    @staticmethod
    def _active_jobs(owner: str, jobs: Any) -> list[dict[str, Any]]:
        return [j for j in jobs.list(owner) if j["state"] not in TERMINAL]

    def gpus_in_use(self, owner: str, jobs: Any, endpoints: Any) -> int:
        used = 0
        for job in self._active_jobs(owner, jobs):
            spec = job.get("spec", {})
            used += int(spec.get("workers", 1)) * int(spec.get("gpus_per_worker", 0))
        for ep in endpoints.list(owner):
            if ep.get("running"):
                used += int(ep.get("gpus", 0) or 0)
        return used

    def check_job(self, owner: str, gpus: int, jobs: Any, endpoints: Any) -> None:
        if self.jobs:
            active = self._active_jobs(owner, jobs)
            if len(active) >= self.jobs:
                names = ", ".join(j["id"] for j in active[:5])
                raise QuotaExceeded(
                    f"You have {len(active)} jobs running (limit {self.jobs}): wait for one to "
                    f"finish or cancel one (`hubforge job cancel ID`; running: {names})"
                )
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
