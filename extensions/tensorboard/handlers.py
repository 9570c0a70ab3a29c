"""TensorBoard REST views, activity tracking and the idle culler in each user's server."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.ioloop import PeriodicCallback

from ..app_base import HubforgeAPIHandler
from ..client import ServiceError
from . import api, process
from .store import InstanceStore

_PROXIED = re.compile(r"/proxy/(?:absolute/)?(\d+)(?:/|$)")


class TensorBoardsHandler(HubforgeAPIHandler):
    async def call(self, func: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(func, *args)
        except api.TensorBoardError as e:  # an unwritable home: 403 or 507, naming it
            raise web.HTTPError(e.status, str(e)) from None

    def opened(self, tb: api.TensorBoard) -> None:
        """Opening counts as a look: an instance answered again (idle until now) is not
        culled between the Open and the page's first request."""
        self.extensionapp.tensorboards.touch(tb.port)

    @web.authenticated
    @authorized
    async def get(self) -> None:
        instances = await self.call(api.list_instances)
        self.finish(json.dumps({"tensorboards": [describe(tb) for tb in instances]}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        if "tuning" in body:  # a tuning run's trials
            tb = await self.call(_open_tuning, body["tuning"])
            self.opened(tb)
            self.set_status(201)
            return self.finish(json.dumps(describe(tb)))
        logdir = body.get("logdir")
        if not logdir or not isinstance(logdir, str | list):
            raise web.HTTPError(
                400,
                'Send {"logdir": "path or job id" (or a list), "name": ...} or {"tuning": "id"}',
            )
        root = self.settings["server_root_dir"]
        items = logdir if isinstance(logdir, list) else [logdir]
        items = [
            i if api.JOB_ID.fullmatch(i) else str(Path(root) / i)
            for i in items
            if isinstance(i, str)
        ]
        tb = await self.call(api.open, items, body.get("name"))
        self.opened(tb)
        self.set_status(201)
        self.finish(json.dumps(describe(tb)))


def _open_tuning(run_id: Any) -> api.TensorBoard:
    from ..jobs import JobError, JobNotFound, get_tuning
    from ..jobs.spec import NAME

    if not isinstance(run_id, str) or not NAME.fullmatch(run_id):
        raise web.HTTPError(400, "'tuning': the id of one of your tuning runs")
    try:
        return api.open(get_tuning(run_id))
    except JobNotFound as e:
        raise web.HTTPError(404, str(e)) from None
    except JobError as e:
        raise web.HTTPError(e.status, str(e)) from None
    except ServiceError as e:
        raise web.HTTPError(502 if e.status in (0, 500) else e.status, str(e)) from None


class TensorBoardHandler(TensorBoardsHandler):
    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.call(api.stop, name)
        self.set_status(204)
        self.finish()


def describe(tb: api.TensorBoard) -> dict[str, Any]:
    return {
        "name": tb.name,
        "url": tb.url,
        "port": tb.port,
        "logdirs": tb.logdirs,
        "started": tb.record["started"],
    }


class Lifecycle:
    """Restores recorded instances on start, stops idle ones, stops all on shutdown."""

    def __init__(self, idle_timeout: float, log: Any):
        self.idle_timeout = idle_timeout
        self.log = log
        self.last_activity: dict[int, float] = {}
        self.culler = PeriodicCallback(self.cull, max(1000, min(60_000, idle_timeout * 250)))

    def track(self, handler: web.RequestHandler) -> None:
        match = _PROXIED.search(handler.request.path)
        if match:
            self.touch(int(match.group(1)))

    def touch(self, port: int) -> None:
        """Activity on the instance at ``port``: its idle time starts again."""
        self.last_activity[port] = time.time()

    def restore(self) -> None:
        """Restart instances recorded by a previous server (same names and log dirs)."""
        store = InstanceStore()
        for name, record in store.read().items():
            if process.alive(record):
                continue
            try:  # an unwritable home: said in the log, the server starts
                with store.edit() as instances:
                    instances.pop(name, None)
                api.open(list(record["logdirs"].values()), name=name, key=record.get("key"))
                self.log.info("Restored TensorBoard %s", name)
            except api.TensorBoardError as e:
                self.log.warning("Could not restore TensorBoard %s: %s", name, e)

    def cull(self) -> None:
        now = time.time()
        for tb in api.list_instances():
            last = max(self.last_activity.get(tb.port, 0), tb.record["started"])
            if now - last > self.idle_timeout:
                self.log.info("Stopping TensorBoard %s: idle for %.0f s", tb.name, now - last)
                tb.stop()

    def stop_all(self) -> None:
        api.stop_processes()  # kept in the list: the next server restores them


def routes(prefix: str) -> list[tuple]:
    return [
        (prefix + "/tensorboards", TensorBoardsHandler),
        (prefix + r"/tensorboards/([^/]+)", TensorBoardHandler),
    ]
