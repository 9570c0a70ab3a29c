"""Jobs REST views of the hubforge service (/services/hubforge/api/jobs...).

The owner is always the caller's identity from its JupyterHub token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tornado import web

from ..httperrors import as_http_error, parse_offset
from ..notify import NotifyError
from ..service.handlers import ServiceHandler
from ..service.quotas import QuotaExceeded
from .errors import JobError, JobNotFound
from .fairshare import DEFAULT_CLASSES, UnknownPriority, class_of, may_use
from .local import new_job_id
from .queue import gpu_owner
from .spec import JobSpec

MAX_SCRIPT_BYTES = 5 * 1024 * 1024


class JobsBaseHandler(ServiceHandler):
    takes_turns = True  # jobs' records are read in their owners' areas

    @property
    def owner(self) -> str:
        if self.identity["kind"] != "user":
            raise web.HTTPError(403, "Jobs belong to users: call with a user's token")
        return self.identity["name"]

    def described(self, record: dict[str, Any]) -> dict[str, Any]:
        """A job's record; while it waits, with its place in the queue and why."""
        return self.queue.describe(record) if self.queue is not None else record

    def fail(self, error: Exception) -> None:
        if isinstance(error, JobNotFound):
            raise web.HTTPError(404, str(error))
        raise web.HTTPError(getattr(error, "status", 400), str(error))

    def checked_spec(self, raw: Any) -> JobSpec:
        """A job's spec from a request: valid here, its priority class the caller's to use
        (400/403 with what to change)."""
        if not isinstance(raw, dict):
            raise web.HTTPError(400, '\'spec\' is an object, e.g. {"name": "mnist", "workers": 2}')
        try:
            spec = JobSpec.from_dict(raw)
            if spec.devices:
                raise JobError(
                    "'devices' is chosen by the workbench: ask for GPUs with gpus_per_worker"
                )
            # no worker may ask for more GPUs than the largest profile offers
            largest = max(p["gpus"] for p in self.workbench.profiles)
            spec.validate(self.workbench.max_job_workers, largest, "the largest profile offers")
            chosen = class_of(spec.priority, self.queue.classes if self.queue else DEFAULT_CLASSES)
        except (JobError, UnknownPriority) as e:
            self.fail(e)
        if not may_use(chosen, self.owner):
            raise web.HTTPError(
                403,
                f"Priority class {chosen.name!r} is not yours to use: ask an admin, or submit "
                "with another (c.Workbench.priority_classes lists who may use which)",
            )
        return spec


class _Submits:
    """One owner's submits: how many are waiting or in progress, and the lock that lets one
    run at a time (their quota check counts the jobs the ones before recorded)."""

    def __init__(self) -> None:
        self.waiting = 0
        self.lock = asyncio.Lock()


_SUBMITS: dict[str, _Submits] = {}  # owner -> their submits (the service's one event loop)


class JobsHandler(JobsBaseHandler):
    async def get(self) -> None:
        try:  # every job.json of the owner is read: off the loop every user shares
            jobs = await asyncio.to_thread(self.jobs.list, self.owner)
            self.write_json({"jobs": [self.described(j) for j in jobs]})
        except JobError as e:
            self.fail(e)

    async def post(self) -> None:
        owner = self.owner
        spec, script = self._request()
        notify = self._notify(owner)
        job_id = new_job_id(spec.name)
        count = spec.workers * spec.gpus_per_worker
        async with self._one_at_a_time(owner):
            waiting = self.queue.waiting_ids(owner) if self.queue is not None else []
            try:  # reads the owner's jobs: off the loop
                await asyncio.to_thread(
                    self.quotas.check_job, owner, count, self.jobs, self.endpoints, waiting
                )
            except QuotaExceeded as e:
                raise web.HTTPError(e.status, str(e)) from None
            record = await self._submit(owner, spec, script, job_id)
        if notify is not None:  # told when it ends (hubforge.jobs.watch)
            await asyncio.to_thread(self.watch.add, owner, job_id, notify)
            record["notify"] = notify
        self.write_json(record, status=201)

    def _notify(self, owner: str) -> dict[str, Any] | None:
        """The body's ``notify`` settings, checked before anything is submitted."""
        notify = self.json_body().get("notify")
        if notify is None:
            return None
        if self.watch is None:
            raise web.HTTPError(400, "This workbench sends no notifications of jobs")
        try:
            return self.watch.notifications.check(owner, notify)
        except NotifyError as e:
            raise web.HTTPError(400, str(e)) from None

    def _request(self) -> tuple[JobSpec, str]:
        """The spec and script of the body, checked (400 with what to change)."""
        body = self.json_body()
        script = body.get("script")
        if not isinstance(script, str) or not script.strip():
            raise web.HTTPError(400, "'script' must be the job's Python source")
        if len(script.encode()) > MAX_SCRIPT_BYTES:
            raise web.HTTPError(413, "The script is larger than 5 MB; keep data out of it")
        return self.checked_spec(body.get("spec") or {}), script

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, owner: str) -> AsyncIterator[None]:
        """The owner's submits run one after the other, off the loop; more waiting than the
        owner may have active jobs are refused at once (429)."""
        submits = _SUBMITS.setdefault(owner, _Submits())
        limit = self.quotas.jobs
        if limit and submits.waiting >= limit:
            refusal = self.quotas.jobs_refusal(submits.waiting, [], "jobs being submitted")
            raise web.HTTPError(429, refusal)
        submits.waiting += 1
        try:
            async with submits.lock:
                yield
        finally:
            submits.waiting -= 1
            if not submits.waiting:
                _SUBMITS.pop(owner, None)

    async def _submit(self, owner: str, spec: JobSpec, script: str, job_id: str) -> dict[str, Any]:
        """Started off the loop. A job that needs what the local queue hands out (GPUs; CPU
        slots when they are limited) is recorded as queued and started by the queue's pass,
        at once when its turn has come and the capacity is free; others (CPU-only work, a
        cluster's jobs) start at once."""
        if self.queue is not None and self.queue.admits(spec):
            return await self._enqueue(owner, spec, script, job_id)
        try:
            return await asyncio.to_thread(self.jobs.submit, owner, spec, script, job_id=job_id)
        except (JobError, OSError) as e:
            if as_http_error(e) is not None:  # a full disk: 507 naming the path
                raise
            raise web.HTTPError(400, f"Could not start the job: {e}") from None

    async def _enqueue(self, owner: str, spec: JobSpec, script: str, job_id: str) -> dict[str, Any]:
        request = self.queue.request(owner, spec, job_id)
        try:
            await asyncio.to_thread(
                self.jobs.submit, owner, spec, script, job_id=job_id, queued=True
            )
        except (JobError, OSError) as e:
            if as_http_error(e) is not None:  # a full disk: 507 naming the path
                raise
            status = getattr(e, "status", 400)
            raise web.HTTPError(status, f"Could not queue the job: {e}") from None
        self.queue.add(request)
        await asyncio.to_thread(self.queue.run_pass)
        return self.described(await asyncio.to_thread(self.jobs.get, owner, job_id))


class JobHandler(JobsBaseHandler):
    async def get(self, job_id: str) -> None:
        try:
            record = await asyncio.to_thread(self.jobs.get, self.owner, job_id)
        except JobNotFound as e:
            self.fail(e)
        self.write_json(self.described(record))

    async def delete(self, job_id: str) -> None:
        if self.queue is not None:  # a waiting job is taken out before it could start
            self.queue.forget(self.owner, job_id)
        # stopping a job's processes takes seconds: never on the loop every user shares
        try:
            record = await asyncio.to_thread(self.jobs.cancel, self.owner, job_id)
        except (JobError, JobNotFound) as e:
            self.fail(e)
        self.allocator.release(gpu_owner(self.owner, job_id))
        self.write_json(record)


class JobLogsHandler(JobsBaseHandler):
    async def get(self, job_id: str, replica: str) -> None:
        offset = parse_offset(self.get_argument("offset", "0"))
        try:  # one bounded page, read off the event loop (other users' calls go on)
            text, offset = await asyncio.to_thread(
                self.jobs.logs, self.owner, job_id, replica, offset
            )
        except (JobError, JobNotFound) as e:
            self.fail(e)
        self.write_json({"text": text, "offset": offset})


class JobProgressHandler(JobsBaseHandler):
    async def get(self, job_id: str) -> None:
        try:
            self.write_json(await asyncio.to_thread(self.jobs.progress, self.owner, job_id))
        except JobNotFound as e:
            self.fail(e)


def release_finished(jobs: Any, allocator: Any) -> None:
    """Give back the GPUs of jobs that ended (called periodically by the service)."""
    for owner in list(allocator.allocations()):
        if not owner.startswith("job/"):
            continue
        _, user, job_id = owner.split("/", 2)
        try:
            state = jobs.get(user, job_id)["state"]
        except JobNotFound:
            state = "gone"
        except Exception:  # unreadable right now (damaged, its owner busy): next time
            continue
        if state in ("succeeded", "failed", "cancelled", "gone"):
            allocator.release(owner)


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/jobs", JobsHandler, args),
        (api + r"/jobs/([^/]+)", JobHandler, args),
        (api + r"/jobs/([^/]+)/logs/([^/]+)", JobLogsHandler, args),
        (api + r"/jobs/([^/]+)/progress", JobProgressHandler, args),
    ]
