"""Schedules' REST views of the hubforge service (/services/hubforge/api/schedules...) (#35).

Every schedule belongs to the user whose token made it: another user's id is not found.
Admins list everyone's (``?all=1``) and may pause or resume any."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from tornado import web

from ..jobs.handlers import JobsBaseHandler
from ..notify import Notifications, NotifyError
from .cron import ScheduleError, check_cron, describe, in_words, next_times
from .store import ScheduleNotFound, Schedules

MAX_NOTEBOOK_BYTES = 5 * 1024 * 1024
FIELDS = {"notebook", "path", "cron", "timezone", "params", "workers", "gpus_per_worker"}
FIELDS |= {"missed", "name", "notify"}


def upcoming(cron: str, timezone: str, count: int = 5) -> list[dict[str, str]]:
    """The next ``count`` run times, as ISO times and in words."""
    now = dt.datetime.now(dt.UTC)
    return [
        {"time": t.isoformat(), "words": in_words(t, now)}
        for t in next_times(cron, timezone, now, count)
    ]


def described(record: dict[str, Any], own: bool = True) -> dict[str, Any]:
    """A schedule as the API shows it: with its cron in words and its next run times (an
    admin sees where another user's webhook posts, not its URL, which may hold a secret)."""
    out = dict(record)
    hook = (record.get("notify") or {}).get("webhook")
    if hook and not own:
        out["notify"] = {**record["notify"], "webhook": urlsplit(hook).hostname or "(set)"}
    try:
        out["description"] = describe(record["cron"])
        out["next"] = [] if record["paused"] else upcoming(record["cron"], record["timezone"])
    except Exception:  # a record the planner cannot take (it skips it too): listed, as is
        out["description"], out["next"] = str(record.get("cron")), []
    return out


class SchedulesBaseHandler(JobsBaseHandler):
    takes_turns = True  # a few requests of one user at a time: big notebooks take a while
    schedules: Schedules
    notifications: Notifications

    def fail_schedule(self, error: Exception) -> None:
        if isinstance(error, ScheduleNotFound):
            raise web.HTTPError(404, error.args[0] if error.args else "No such schedule")
        raise web.HTTPError(400, str(error))


class SchedulesHandler(SchedulesBaseHandler):
    async def get(self) -> None:
        everyone = self.get_argument("all", "") in ("1", "true")
        if everyone and not self.identity["admin"]:
            raise web.HTTPError(403, "Only admins see every user's schedules; leave out ?all=1")
        owner = None if everyone else self.owner
        records = await asyncio.to_thread(self.schedules.list, owner)
        mine = self.identity["name"]
        self.write_json({"schedules": [described(r, r["owner"] == mine) for r in records]})

    async def post(self) -> None:
        if len(self.request.body) > MAX_NOTEBOOK_BYTES:
            raise web.HTTPError(413, "The notebook is larger than 5 MB; keep data out of it")
        body = self.json_body()
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise web.HTTPError(400, f"Unknown field(s) {unknown}; known: {sorted(FIELDS)}")
        spec = {"name": "scheduled", "workers": body.get("workers", 1)}
        spec["gpus_per_worker"] = body.get("gpus_per_worker", 0)
        self.checked_spec(spec)  # the workbench's limits on workers and GPUs
        notify = body.get("notify")
        if notify is not None:
            try:
                notify = self.notifications.check(self.owner, notify)
            except NotifyError as e:
                raise web.HTTPError(400, str(e)) from None
        try:
            record = await asyncio.to_thread(
                self.schedules.create,
                self.owner,
                body.get("notebook"),
                body.get("cron"),
                body.get("timezone", "UTC"),
                body.get("params"),
                spec["workers"],
                spec["gpus_per_worker"],
                body.get("missed", "once"),
                body.get("name") or "",
                body.get("path") or "",
                notify,
            )
        except ScheduleError as e:
            self.fail_schedule(e)
        self.write_json(described(record), status=201)


class ScheduleHandler(SchedulesBaseHandler):
    def _owner_of(self, schedule_id: str) -> str:
        """The caller, or for an admin naming ``?owner=``, that user (pause and resume)."""
        named = self.get_argument("owner", "")
        if named and named != self.identity["name"]:
            if not self.identity["admin"]:
                raise web.HTTPError(403, "Only admins act on another user's schedules")
            return named
        return self.owner

    async def get(self, schedule_id: str) -> None:
        try:
            record = await asyncio.to_thread(
                self.schedules.get, self._owner_of(schedule_id), schedule_id
            )
        except (ScheduleNotFound, ScheduleError) as e:
            self.fail_schedule(e)
        self.write_json(described(record))

    async def patch(self, schedule_id: str) -> None:
        """``{"paused": true|false}`` or ``{"notebook": {...}}`` (runs from now on run it)."""
        if len(self.request.body) > MAX_NOTEBOOK_BYTES:
            raise web.HTTPError(413, "The notebook is larger than 5 MB; keep data out of it")
        body = self.json_body()
        if set(body) not in ({"paused"}, {"notebook"}):
            raise web.HTTPError(
                400, 'Send {"paused": true} or {"paused": false}, or {"notebook": {...}}'
            )
        owner = self._owner_of(schedule_id)
        if "notebook" in body and owner != self.identity["name"]:
            raise web.HTTPError(403, "Only the schedule's owner changes its notebook")
        try:
            if "paused" in body:
                if not isinstance(body["paused"], bool):
                    raise ScheduleError("paused: true or false")
                await asyncio.to_thread(
                    self.schedules.set_paused, owner, schedule_id, body["paused"]
                )
            else:
                await asyncio.to_thread(
                    self.schedules.update_notebook, owner, schedule_id, body["notebook"]
                )
            record = await asyncio.to_thread(self.schedules.get, owner, schedule_id)
        except (ScheduleNotFound, ScheduleError) as e:
            self.fail_schedule(e)
        self.write_json(described(record))

    async def delete(self, schedule_id: str) -> None:
        try:
            await asyncio.to_thread(self.schedules.delete, self.owner, schedule_id)
        except (ScheduleNotFound, ScheduleError) as e:
            self.fail_schedule(e)
        self.set_status(204)
        self.finish()


class CronHandler(SchedulesBaseHandler):
    """The cron helper: ``?cron=0 2 * * *&timezone=Europe/Berlin`` -> in words, next five."""

    async def get(self) -> None:
        cron, timezone = self.get_argument("cron", ""), self.get_argument("timezone", "UTC")
        try:
            cron = check_cron(cron)
            self.write_json(
                {
                    "cron": cron,
                    "timezone": timezone,
                    "description": describe(cron),
                    "next": upcoming(cron, timezone),
                }
            )
        except ScheduleError as e:
            self.fail_schedule(e)


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/schedules", SchedulesHandler, args),
        (api + r"/schedules/([^/]+)", ScheduleHandler, args),
        (api + "/cron", CronHandler, args),
    ]
