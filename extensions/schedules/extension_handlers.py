"""Schedules' REST views in each user's Jupyter server (/hubforge/api/schedules...), for the
Run-as-job dialog's Schedule tab and the sidebar (#35). Thin: every call goes through
``hubforge.schedules`` (to the hubforge service, which keeps them)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..app_base import HubforgeAPIHandler
from ..client import ServiceError
from . import api
from .cron import ScheduleError
from .runs import lab_path

CREATE_FIELDS = {"path", "cron", "timezone", "params", "workers", "gpus_per_worker"}
CREATE_FIELDS |= {"missed", "name", "notify"}


def shown(schedule: api.Schedule) -> dict[str, Any]:
    """A schedule for the sidebar: each run's executed notebook as a path the Lab opens."""
    record = schedule.record
    record["runs"] = [
        {**r, "lab_path": lab_path(record["owner"], r.get("executed_notebook"))}
        for r in record["runs"]
    ]
    return record


class SchedulesAPIHandler(HubforgeAPIHandler):
    async def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(func, *args, **kwargs)
        except ScheduleError as e:
            status = 404 if str(e).startswith("No schedule") else 400
            raise web.HTTPError(status, str(e)) from None
        except ServiceError as e:
            raise web.HTTPError(502 if e.status in (0, 500) else e.status, str(e)) from None


class SchedulesHandler(SchedulesAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        found = await self.call(api.list_schedules)
        self.finish(json.dumps({"schedules": [shown(s) for s in found]}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body.get("path"), str) or not isinstance(body.get("cron"), str):
            raise web.HTTPError(400, 'Send {"path": "report.ipynb", "cron": "0 2 * * *", ...}')
        unknown = set(body) - CREATE_FIELDS
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s) {sorted(unknown)}; valid: {sorted(CREATE_FIELDS)}"
            )
        path = Path(self.settings["server_root_dir"]).expanduser() / body.pop("path")
        made = await self.call(api.create, path, body.pop("cron"), **body)
        self.set_status(201)
        self.finish(json.dumps(shown(made)))


class ScheduleHandler(SchedulesAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, schedule_id: str) -> None:
        self.finish(json.dumps(shown(await self.call(api.get, schedule_id))))

    @web.authenticated
    @authorized
    async def patch(self, schedule_id: str) -> None:
        """``{"paused": bool}``, or ``{"update_notebook": true}`` (run the notebook as it is
        now, from where it was scheduled)."""
        body = self.json_body()
        schedule = await self.call(api.get, schedule_id)
        if body == {"update_notebook": True}:
            await self.call(schedule.update_notebook)
        elif set(body) == {"paused"} and isinstance(body["paused"], bool):
            await self.call(schedule.pause if body["paused"] else schedule.resume)
        else:
            raise web.HTTPError(400, 'Send {"paused": true|false} or {"update_notebook": true}')
        self.finish(json.dumps(shown(schedule)))

    @web.authenticated
    @authorized
    async def delete(self, schedule_id: str) -> None:
        schedule = await self.call(api.get, schedule_id)
        await self.call(schedule.delete)
        self.finish(json.dumps({"deleted": schedule_id}))


class CronHandler(SchedulesAPIHandler):
    """The cron helper of the Schedule tab: in words, and the next five times."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        cron, timezone = self.get_argument("cron", ""), self.get_argument("timezone", "UTC")
        self.finish(json.dumps(await self.call(api.explain, cron, timezone)))


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/schedules", SchedulesHandler),
        (prefix + r"/schedules/([^/]+)", ScheduleHandler),
        (prefix + "/cron", CronHandler),
    ]
