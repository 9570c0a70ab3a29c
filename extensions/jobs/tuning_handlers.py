"""Tuning runs' REST views of the hubforge service (/services/hubforge/api/tunings...), and
how the service submits their trials: as the owner's own jobs, with their quota and the
queue, exactly as a submit through ``POST jobs`` (#34)."""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from ..service.quotas import QuotaExceeded
from .errors import JobError, JobNotFound
from .handlers import JobsBaseHandler
from .spec import JobSpec
from .tuning import Waiting

MAX_NOTEBOOK_BYTES = 5 * 1024 * 1024


class ServiceTrialJobs:
    """The service's jobs for tuning runs: the owner's job quota (a trial over it waits for
    one of theirs to end) and the local queue (GPU trials wait for GPUs like every job)."""

    def __init__(self, jobs: Any, queue: Any, quotas: Any, endpoints: Any) -> None:
        self.jobs, self.queue, self.quotas, self.endpoints = jobs, queue, quotas, endpoints

    def check_quota(self, owner: str, spec: JobSpec) -> None:
        """Waiting when the owner's quota has no room for the job now."""
        waiting = self.queue.waiting_ids(owner) if self.queue is not None else []
        count = spec.workers * spec.gpus_per_worker
        try:
            self.quotas.check_job(owner, count, self.jobs, self.endpoints, waiting)
        except QuotaExceeded as e:
            raise Waiting(f"waits for room in your quota: {e}") from None

    def submit(self, owner: str, spec: JobSpec, script: str, job_id: str) -> dict[str, Any]:
        self.check_quota(owner, spec)
        if self.queue is not None and self.queue.admits(spec):
            request = self.queue.request(owner, spec, job_id)
            record = self.jobs.submit(owner, spec, script, job_id=job_id, queued=True)
            self.queue.add(request)
            return record
        return self.jobs.submit(owner, spec, script, job_id=job_id)

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        return self.jobs.get(owner, job_id)

    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        return self.jobs.progress(owner, job_id)

    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        if self.queue is not None:
            self.queue.forget(owner, job_id)
        return self.jobs.cancel(owner, job_id)


class TuningsHandler(JobsBaseHandler):
    takes_turns = False  # runs are the service's own files; trials' jobs are read in passes

    async def get(self) -> None:
        runs = await asyncio.to_thread(self.tunings.list, self.owner)
        self.write_json({"tunings": runs})

    async def post(self) -> None:
        if len(self.request.body) > MAX_NOTEBOOK_BYTES:
            raise web.HTTPError(413, "The notebook is larger than 5 MB; keep data out of it")
        body = self.json_body()
        notebook = body.get("notebook")
        if not isinstance(notebook, dict):
            raise web.HTTPError(400, "'notebook' is the notebook's JSON (its cells and metadata)")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise web.HTTPError(
                400, '\'spec\': an object, e.g. {"workers": 2, "gpus_per_worker": 1}'
            )
        spec = dict(spec)
        name = body.get("name") or "tune"
        self.checked_spec({**spec, "name": f"{name}-t0"} if isinstance(name, str) else spec)
        try:
            record = await asyncio.to_thread(
                self.tunings.create,
                self.owner,
                notebook,
                body.get("space"),
                body.get("objective"),
                body.get("max_trials", 10),
                body.get("parallel", 2),
                body.get("algorithm", "random"),
                spec,
                name,
                body.get("max_epochs"),
                body.get("factor", 3),
            )
        except JobError as e:
            self.fail(e)
        self.write_json(record, status=201)


class TuningHandler(JobsBaseHandler):
    takes_turns = False

    async def get(self, run_id: str) -> None:
        try:
            self.write_json(await asyncio.to_thread(self.tunings.get, self.owner, run_id))
        except JobNotFound as e:
            self.fail(e)

    async def delete(self, run_id: str) -> None:
        """Cancel the search and its trials (stopping a job's processes takes seconds)."""
        try:
            self.write_json(await asyncio.to_thread(self.tunings.cancel, self.owner, run_id))
        except JobNotFound as e:
            self.fail(e)


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/tunings", TuningsHandler, args),
        (api + r"/tunings/([^/]+)", TuningHandler, args),
    ]
