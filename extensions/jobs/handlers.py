"""Jobs REST views of the hubforge service (/services/hubforge/api/jobs...).

The owner is always the caller's identity from its JupyterHub token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tornado import web

from ..gpus import NotEnoughGpus
from ..httperrors import as_http_error, parse_offset
from ..service.handlers import ServiceHandler
from ..service.quotas import QuotaExceeded
from .errors import JobError, JobNotFound
from .local import new_job_id
from .spec import JobSpec

MAX_SCRIPT_BYTES = 5 * 1024 * 1024


def gpu_owner(user: str, job_id: str) -> str:
    return f"job/{user}/{job_id}"


class JobsBaseHandler(ServiceHandler):
    takes_turns = True  # jobs' records are read in their owners' areas

    @property
    def owner(self) -> str:
        if self.identity["kind"] != "user":
            raise web.HTTPError(403, "Jobs belong to users: call with a user's token")
        return self.identity["name"]

    def fail(self, error: Exception) -> None:
        if isinstance(error, JobNotFound):
            raise web.HTTPError(404, str(error))
        raise web.HTTPError(getattr(error, "status", 400), str(error))


class _Submits:
    """One owner's submits: how many are waiting or in progress, and the lock that lets one
    run at a time (their quota check counts the jobs the ones before recorded)."""

    def __init__(self) -> None:
        self.waiting = 0
        self.lock = asyncio.Lock()


_SUBMITS: dict[str, _Submits] = {}  # owner -> their submits (the service's one event loop)
# GPU owners whose job is being written and started: no record yet, yet not gone
_STARTING: set[str] = set()


class JobsHandler(JobsBaseHandler):
    async def get(self) -> None:
        try:  # every job.json of the owner is read: off the loop every user shares
            self.write_json({"jobs": await asyncio.to_thread(self.jobs.list, self.owner)})
        except JobError as e:
            self.fail(e)

    async def post(self) -> None:
        owner = self.owner
        spec, script = self._request()
        job_id = new_job_id(spec.name)
        count = spec.workers * spec.gpus_per_worker
        async with self._one_at_a_time(owner):
            try:  # reads the owner's jobs: off the loop
                await asyncio.to_thread(
                    self.quotas.check_job, owner, count, self.jobs, self.endpoints
                )
            except QuotaExceeded as e:
                raise web.HTTPError(e.status, str(e)) from None
            record = await self._submit(owner, spec, script, job_id, count)
        self.write_json(record, status=201)

    def _request(self) -> tuple[JobSpec, str]:
        """The spec and script of the body, checked (400 with what to change)."""
        body = self.json_body()
        script = body.get("script")
        if not isinstance(script, str) or not script.strip():
            raise web.HTTPError(400, "'script' must be the job's Python source")
        if len(script.encode()) > MAX_SCRIPT_BYTES:
            raise web.HTTPError(413, "The script is larger than 5 MB; keep data out of it")
        try:
            spec = JobSpec.from_dict(body.get("spec") or {})
            if spec.devices:
                raise JobError(
                    "'devices' is chosen by the workbench: ask for GPUs with gpus_per_worker"
                )
            # no worker may ask for more GPUs than the largest profile offers
            largest = max(p["gpus"] for p in self.workbench.profiles)
            spec.validate(self.workbench.max_job_workers, largest, "the largest profile offers")
        except JobError as e:
            self.fail(e)
        return spec, script

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

    async def _submit(
        self, owner: str, spec: JobSpec, script: str, job_id: str, count: int
    ) -> dict[str, Any]:
        """GPUs handed out on the loop (the allocator is the loop's), the job started off it."""
        holder = gpu_owner(owner, job_id)
        if count and self.jobs.local_devices:
            try:
                spec.devices = self.allocator.allocate(holder, count)
            except NotEnoughGpus as e:
                raise web.HTTPError(409, str(e)) from None
        _STARTING.add(holder)  # release_finished must not take them back meanwhile
        try:
            return await asyncio.to_thread(self.jobs.submit, owner, spec, script, job_id=job_id)
        except (JobError, OSError) as e:
            self.allocator.release(holder)
            if as_http_error(e) is not None:  # a full disk: 507 naming the path
                raise
            raise web.HTTPError(400, f"Could not start the job: {e}") from None
        except BaseException:
            self.allocator.release(holder)
            raise
        finally:
            _STARTING.discard(holder)


class JobHandler(JobsBaseHandler):
    async def get(self, job_id: str) -> None:
        try:
            self.write_json(await asyncio.to_thread(self.jobs.get, self.owner, job_id))
        except JobNotFound as e:
            self.fail(e)

    async def delete(self, job_id: str) -> None:
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
        if not owner.startswith("job/") or owner in _STARTING:
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
