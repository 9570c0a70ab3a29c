"""Optimize for mobile, from the sidebar (``/hubforge/api/mobile``): start an optimization
of a finished job's model, an endpoint's or a model folder's as a job of this server's
user; list them with their progress and reports; one with its snippets.

Thin: each handler calls ``serving.mobile_views`` as this server's user, so a caller
reaches only that user's jobs, endpoints and files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..sidebar_handlers import SidebarHandler

SOURCES = ("job", "endpoint", "model")
FIELDS = {
    "data": str,
    "variants": list,
    "max_accuracy_loss": (int, float),
    "sparsity": (int, float),
    "clusters": int,
    "epochs": int,
    "gpus": int,
}
ASK = (
    'Send {"job": "<job id>"} (or "endpoint": NAME, or "model": a folder in your home), '
    'and optionally "data" (an .npz or a folder of class folders, in your home), '
    '"variants", "max_accuracy_loss", "sparsity", "clusters", "epochs", "gpus"'
)


class MobileHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from . import mobile_views

        found = await self.call(mobile_views.list_optimizations)
        self.finish(json.dumps({"optimizations": found}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        from . import mobile_views

        body = self.json_body()
        named = [k for k in SOURCES if k in body]
        unknown = set(body) - set(SOURCES) - set(FIELDS)
        wrong = [k for k, kind in FIELDS.items() if k in body and not _is(body[k], kind)]
        if len(named) != 1 or not isinstance(body[named[0]], str) or unknown or wrong:
            why = f" (unknown: {sorted(unknown)})" if unknown else ""
            why += f" (not the right kind: {wrong})" if wrong else ""
            raise web.HTTPError(400, ASK + why)
        kind, value = named[0], body[named[0]]
        source = await self.call(self._source, kind, value)
        settings = {k: body[k] for k in FIELDS if k in body and k != "data"}
        data = self.home_path(body["data"], "data") if "data" in body else None
        job = await self.call(
            mobile_views.submit, source, data=data, origin={kind: value}, **settings
        )
        self.set_status(202)
        self.finish(json.dumps(await self.call(mobile_views.view, job)))

    def _source(self, kind: str, value: str) -> Any:
        """The job, or the model folder (an endpoint's newest version)."""
        if kind == "job":
            from ..jobs import api as jobs
            from .api import model_dir_of

            job = jobs.get(value)
            model_dir_of(job)  # 400 unless it succeeded
            return job
        if kind == "endpoint":
            from .api import get

            record = get(value).record
            if not record.get("versions"):
                raise web.HTTPError(400, f"endpoint {value} has no version to optimize yet")
            return str(Path(record["base_path"]) / str(max(record["versions"])))
        return str(self.home_path(value, "model"))

    def home_path(self, relative: Any, what: str) -> Path:
        home = Path(self.settings["server_root_dir"]).expanduser()
        if not isinstance(relative, str) or not relative:
            raise web.HTTPError(400, f"{what}: a path relative to your home folder")
        path = Path(relative)
        if path.is_absolute() or ".." in path.parts:
            raise web.HTTPError(400, f"{what}={relative!r}: a path inside your home folder")
        return home / path


def _is(value: Any, kind: Any) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


class OptimizationHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        from . import mobile_views

        self.finish(json.dumps(await self.call(mobile_views.get_optimization, job_id)))


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/mobile", MobileHandler),
        (prefix + r"/mobile/([^/]+)", OptimizationHandler),
    ]
