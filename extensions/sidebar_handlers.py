"""REST views the JupyterLab sidebar calls (/hubforge/api/...), next to the jobs and
TensorBoard routes: endpoints, labeling projects, GPU status and a job's pre-submit check.

Thin: each handler calls the engine's Python API as this server's user, so a caller sees and
changes only what that user may (the hubforge service checks again behind it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .app_base import HubforgeAPIHandler
from .client import ServiceClient, ServiceError


class SidebarHandler(HubforgeAPIHandler):
    """Engine errors become JSON errors with the engine's own words."""

    async def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        from .jobs.errors import JobError, JobNotFound
        from .labeling.api import LabelingError
        from .serving.api import BadRequest, NotFound, ServingError

        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except (NotFound, JobNotFound) as e:
            raise web.HTTPError(404, str(e)) from None
        except JobError as e:
            raise web.HTTPError(e.status, str(e)) from None
        except (BadRequest, LabelingError) as e:
            raise web.HTTPError(400, str(e)) from None
        except (ServingError, ServiceError) as e:
            raise web.HTTPError(502, str(e)) from None

    def notebook_path(self, relative: Any) -> Path:
        if not isinstance(relative, str) or not relative:
            raise web.HTTPError(400, "Give the notebook's path, relative to your home folder")
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise web.HTTPError(
                400, f"{relative}: give a notebook inside your home folder (a path relative to it)"
            )
        return Path(self.settings["server_root_dir"]).expanduser() / relative


def _readable_file(path: Path) -> bool:
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:
        return False


def _endpoint_view(endpoint: Any) -> dict[str, Any]:
    record = dict(endpoint.record)
    record["public_url"] = endpoint.public_url
    return record


class EndpointsHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from .serving import api

        endpoints = await self.call(api.list_endpoints)
        self.finish(json.dumps({"endpoints": [_endpoint_view(e) for e in endpoints]}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Deploy a finished job's model: ``{"job": "<job id>", "name": "<endpoint>"}``."""
        from .jobs import api as jobs
        from .serving import api

        body = self.json_body()
        job_id, name = body.get("job"), body.get("name")
        if not isinstance(job_id, str) or not isinstance(name, str) or set(body) - {"job", "name"}:
            raise web.HTTPError(400, 'Send {"job": "<job id>", "name": "<endpoint name>"}')
        job = await self.call(jobs.get, job_id)
        endpoint = await self.call(api.deploy, job, name)
        self.set_status(201)
        self.finish(json.dumps(_endpoint_view(endpoint)))


class EndpointHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        from .serving import api

        endpoint = await self.call(api.get, name)
        view = _endpoint_view(endpoint)
        try:
            example = await asyncio.to_thread(endpoint.example_instances)
        except Exception:  # a stopped or still loading endpoint has no metadata yet
            view["example"] = view["curl"] = None
        else:  # the curl line sends what Try it sends: shaped like the model's signature
            view["example"] = {"instances": example}
            view["curl"] = endpoint.curl(example)
        self.finish(json.dumps(view))

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        """Try it: ``{"instances": [...]}`` → the predictions and the round trip in ms."""
        from .serving import api

        body = self.json_body()
        if not isinstance(body.get("instances"), list) or set(body) - {"instances", "version"}:
            raise web.HTTPError(400, 'Send {"instances": [...]} (and "version": N if you want one)')
        endpoint = await self.call(api.get, name)
        started = time.perf_counter()
        predictions = await self.call(endpoint.predict, body["instances"], body.get("version"))
        took = (time.perf_counter() - started) * 1000
        self.finish(json.dumps({"predictions": predictions, "latency_ms": round(took, 1)}))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        from .serving import api

        endpoint = await self.call(api.get, name)
        await self.call(endpoint.undeploy)
        self.finish(json.dumps(_endpoint_view(endpoint)))


class EndpointTrafficHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        """What the gateway counted for one of your endpoints (?window=1h&points=60)."""
        from .serving import api

        window, points = self.get_argument("window", "1h"), self.get_argument("points", "60")
        if not re.fullmatch(r"[0-9]{1,3}", points):
            raise web.HTTPError(400, f"points={points!r:.20}: a number of steps from 1 to 500")
        endpoint = await self.call(api.get, name)
        report = await self.call(endpoint.traffic, window, int(points))
        self.finish(json.dumps(report.summary))


class RolloutHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        """Roll back the canary of one of your endpoints (Roll back in the panel)."""
        from .serving import api

        endpoint = await self.call(api.get, name)
        self.finish(json.dumps(await self.call(endpoint.rollback)))


class SavedRequestsHandler(SidebarHandler):
    """Requests kept for one of your endpoints: GET lists, POST {"name", "request"} keeps
    one (the same name replaces it), DELETE .../requests/<name> forgets one."""

    async def _endpoint(self, name: str) -> None:
        from .serving import api

        await self.call(api.get, name)  # yours, or 404

    @web.authenticated
    @authorized
    async def get(self, name: str, saved: str | None = None) -> None:
        from .serving import saved_requests

        await self._endpoint(name)
        self.finish(json.dumps({"requests": await self.call(saved_requests.list_saved, name)}))

    @web.authenticated
    @authorized
    async def post(self, name: str, saved: str | None = None) -> None:
        from .serving import saved_requests

        if saved is not None:
            raise web.HTTPError(405, 'POST to .../requests with {"name", "request"}')
        body = self.json_body()
        await self._endpoint(name)
        kept = await self.call(saved_requests.save, name, body.get("name"), body.get("request"))
        self.set_status(201)
        self.finish(json.dumps({"requests": kept}))

    @web.authenticated
    @authorized
    async def delete(self, name: str, saved: str | None = None) -> None:
        from .serving import saved_requests

        if saved is None:
            raise web.HTTPError(405, "DELETE .../requests/<name of the saved request>")
        await self._endpoint(name)
        try:
            kept = await self.call(saved_requests.delete, name, saved)
        except KeyError:
            raise web.HTTPError(404, f"No saved request {saved!r} for {name}") from None
        self.finish(json.dumps({"requests": kept}))


class LabelingProjectsHandler(SidebarHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from .labeling import api

        def projects() -> list[dict[str, Any]]:
            return [{**p.summary(), "url": p.url} for p in api.list_projects()]

        self.finish(json.dumps({"projects": await self.call(projects)}))


class JobCheckHandler(SidebarHandler):
    """What the Run-as-job dialog shows before submit: the notebook's parameters (from its
    ``parameters`` cell, with their types) and the conversion's warnings for N workers."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        from .jobs import api as jobs
        from .jobs.convert import parameters_of, read_notebook

        path = self.notebook_path(self.get_argument("path", ""))
        try:
            workers = int(self.get_argument("workers", "1"))
        except ValueError:
            raise web.HTTPError(400, "'workers' must be a whole number, e.g. 2") from None
        if path.suffix != ".ipynb" or not await self.call(_readable_file, path):
            raise web.HTTPError(400, f"{path.name}: give a notebook (.ipynb) in your home folder")
        warnings = await self.call(jobs.check, path, workers)
        params = await self.call(lambda: parameters_of(read_notebook(path)))
        typed = [{"name": k, "value": v, "type": type(v).__name__} for k, v in params.items()]
        self.finish(json.dumps({"path": str(path), "warnings": warnings, "parameters": typed}))


def nvidia_smi() -> list[dict[str, Any]]:
    """This server's GPUs with memory and utilisation (empty without nvidia-smi)."""
    binary = shutil.which("nvidia-smi")
    if not binary:
        return []
    fields = "index,name,memory.used,memory.total,utilization.gpu"
    try:
        out = subprocess.run(
            [binary, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
    gpus = []
    for line in out.strip().splitlines():
        fields = [x.strip() for x in line.split(",")]
        if len(fields) != 5 or (visible and fields[0] not in visible):
            continue
        index, name, used, total, util = fields
        gpus.append(
            {
                "index": index,
                "name": name,
                "memory_used_mib": _number(used),
                "memory_total_mib": _number(total),
                "utilization": _number(util),
            }
        )
    return gpus


def _number(text: str) -> float | None:
    """nvidia-smi writes "[N/A]" where a GPU cannot tell (MIG slices, some drivers)."""
    try:
        return float(text)
    except ValueError:
        return None


class GpuStatusHandler(SidebarHandler):
    """GPUs in use and free on the workbench (from the service), this server's GPUs."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        status: dict[str, Any] = {"workbench": None, "server": await asyncio.to_thread(nvidia_smi)}
        if ServiceClient.available():
            try:
                service = await asyncio.to_thread(ServiceClient().status)
                gpus = service["gpus"]
                status["workbench"] = {"total": gpus["total"], "free": gpus["free"]}
                status["waiting_for_gpus"] = service.get("waiting_for_gpus")
            except (ServiceError, KeyError) as e:
                status["workbench"] = {"error": str(e)}
        status["visible"] = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
        self.finish(json.dumps(status))


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/endpoints", EndpointsHandler),
        (prefix + r"/endpoints/([^/]+)", EndpointHandler),
        (prefix + r"/endpoints/([^/]+)/traffic", EndpointTrafficHandler),
        (prefix + r"/endpoints/([^/]+)/rollout", RolloutHandler),
        (prefix + r"/endpoints/([^/]+)/requests", SavedRequestsHandler),
        (prefix + r"/endpoints/([^/]+)/requests/([^/]+)", SavedRequestsHandler),
        (prefix + "/labeling/projects", LabelingProjectsHandler),
        (prefix + "/job-check", JobCheckHandler),
        (prefix + "/gpus", GpuStatusHandler),
    ]
