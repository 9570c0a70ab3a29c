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
from . import api, tuning_api
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


TUNE_FIELDS = {
    "path",
    "space",
    "objective",
    "max_trials",
    "parallel",
    "algorithm",
    "max_epochs",
    "factor",
    "workers",
    "gpus_per_worker",
    "name",
    "priority",
}


class TuningsHandler(JobsAPIHandler):
    """The user's tuning runs (the sidebar's Tuning group), and a new one from a notebook."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        runs = await self.call(tuning_api.list_tunings)
        self.finish(json.dumps({"tunings": [r.record for r in runs]}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body.get("path"), str) or "space" not in body or "objective" not in body:
            raise web.HTTPError(
                400, 'Send {"path": "train.ipynb", "space": {...}, "objective": "val_accuracy"}'
            )
        unknown = set(body) - TUNE_FIELDS
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s) {sorted(unknown)}; valid: {sorted(TUNE_FIELDS)}"
            )
        path = Path(self.settings["server_root_dir"]).expanduser() / body.pop("path")
        run = await self.call(tuning_api.tune, path, **body)
        self.set_status(201)
        self.finish(json.dumps(run.record))


class TuningHandler(JobsAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        run = await self.call(tuning_api.get_tuning, run_id)
        self.finish(json.dumps(run.record))

    @web.authenticated
    @authorized
    async def delete(self, run_id: str) -> None:
        """Cancel the search and its trials."""
        run = await self.call(tuning_api.get_tuning, run_id)
        await self.call(run.cancel)
        self.finish(json.dumps(run.record))


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/tunings", TuningsHandler),
        (prefix + r"/tunings/([^/]+)", TuningHandler),
        (prefix + "/jobs", JobsHandler),
        (prefix + r"/jobs/([^/]+)", JobHandler),
        (prefix + r"/jobs/([^/]+)/logs/([^/]+)", JobLogsHandler),
        (prefix + r"/jobs/([^/]+)/progress", JobProgressHandler),
    ]
