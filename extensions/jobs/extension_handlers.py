"""Jobs REST views in each user's Jupyter server (/hubforge/api/jobs...), for the sidebar.

Thin: every call goes through ``hubforge.jobs`` (and so to the hubforge service in a hub).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..app_base import HubforgeAPIHandler
from ..client import ServiceError
from ..httperrors import parse_offset
from . import api
from .errors import JobError, JobNotFound

SUBMIT_FIELDS = {
    "path",
    "workers",
    "gpus_per_worker",
    "cpu",
    "memory",
    "params",
    "name",
    "max_restarts",
    "priority",
}


class JobsAPIHandler(HubforgeAPIHandler):
    async def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except JobNotFound as e:
            raise web.HTTPError(404, str(e)) from None
        except JobError as e:
            raise web.HTTPError(e.status, str(e)) from None
        except ServiceError as e:
            raise web.HTTPError(502 if e.status in (0, 500) else e.status, str(e)) from None


class JobsHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        jobs = await self.call(api.list_jobs)
        self.finish(json.dumps({"jobs": [j.record for j in jobs]}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body.get("path"), str):
            raise web.HTTPError(400, 'Send {"path": "notebook.ipynb", "workers": N, ...}')
        unknown = set(body) - SUBMIT_FIELDS
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s) {sorted(unknown)}; valid: {sorted(SUBMIT_FIELDS)}"
            )
        path = Path(self.settings["server_root_dir"]).expanduser() / body.pop("path")
        job = await self.call(api.submit, path, **body)
        self.set_status(201)
        self.finish(json.dumps({**job.record, "warnings": job.warnings}))


class JobHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        job = await self.call(api.get, job_id)
        self.finish(json.dumps(job.record))

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        job = await self.call(api.get, job_id)
        await self.call(job.cancel)
        self.finish(json.dumps(job.record))


class JobLogsHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str, replica: str) -> None:
        offset = parse_offset(self.get_argument("offset", "0"))
        backend = api.default_backend()
        text, offset = await self.call(backend.logs, api.current_user(), job_id, replica, offset)
        self.finish(json.dumps({"text": text, "offset": offset}))


class JobProgressHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        backend = api.default_backend()
        self.finish(json.dumps(await self.call(backend.progress, api.current_user(), job_id)))


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/jobs", JobsHandler),
        (prefix + r"/jobs/([^/]+)", JobHandler),
        (prefix + r"/jobs/([^/]+)/logs/([^/]+)", JobLogsHandler),
        (prefix + r"/jobs/([^/]+)/progress", JobProgressHandler),
    ]
