"""The team at a glance, for admins (the hub's home page): every user's jobs by state,
endpoints, and the GPUs they hold.

GET .../api/team -> {"users": [{"name", "admin", "server", "jobs": {state: n}, "endpoints",
"serving", "gpus": [device, ...]}], "endpoints": [{"owner", "name", "requests", "rps",
"error_rate", "p99_ms", "rollout", ...}] (the last hour), "gpus": {"total", "free"}, "queue",
"schedules": [...]}.
Admins and the hub side only.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

from tornado import web

from ..gpus import holder_user
from .handlers import ServiceHandler
from .hub_api import HubUnavailable, all_users


def user_row(
    model: dict[str, Any], jobs: list[dict], endpoints: list[dict], held: dict[str, list[str]]
) -> dict[str, Any]:
    """One user's line: ``held`` maps GPU owners (servers and jobs) to devices."""
    name = model["name"]
    gpus = sorted(d for owner, ds in held.items() if holder_user(owner) == name for d in ds)
    return {
        "name": name,
        "admin": bool(model.get("admin")),
        "server": bool((model.get("servers") or {}).get("", {}).get("ready")),
        "jobs": dict(Counter(j.get("state", "unknown") for j in jobs)),
        "endpoints": len(endpoints),
        "serving": sum(1 for e in endpoints if e.get("running")),
        "gpus": gpus,
    }


def schedule_row(record: dict[str, Any]) -> dict[str, Any]:
    """One schedule's line: owner, when it runs, its next run and its last run's state."""
    from ..schedules.handlers import described

    shown = described(record, own=False)
    last = record["runs"][-1] if record["runs"] else None
    return {
        "id": record["id"],
        "name": record["name"],
        "owner": record["owner"],
        "cron": record["cron"],
        "timezone": record["timezone"],
        "description": shown["description"],
        "paused": record["paused"],
        "next": shown["next"][0]["words"] if shown["next"] else None,
        "last": {"number": last["number"], "state": last["state"]} if last else None,
    }


def endpoint_row(record: dict[str, Any], traffic: Any, rollouts: Any) -> dict[str, Any]:
    """One endpoint's line: its last hour as the gateway counted it, and its rollout."""
    owner, name = record["owner"], record["name"]
    hour = traffic.summary(owner, name, 3600, points=1)["totals"] if traffic else {}
    rollout = rollouts.get(owner, name) if rollouts else None
    from ..serving.rollout import RUNNING

    return {
        "owner": owner,
        "name": name,
        "running": bool(record.get("running")),
        "versions": record.get("versions") or [],
        "requests": hour.get("requests", 0),
        "rps": hour.get("rps", 0.0),
        "error_rate": hour.get("error_rate", 0.0),
        "p99_ms": hour.get("p99_ms"),
        "rollout": (
            None
            if rollout is None
            else f"version {rollout['canary']} at {rollout['percent']}%"
            if rollout["state"] == RUNNING
            else rollout["history"][-1]["event"]
        ),
    }


class TeamHandler(ServiceHandler):
    async def get(self) -> None:
        self.require_privileged()
        try:
            models = await all_users(
                os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
            )
        except (HubUnavailable, OSError) as e:
            raise web.HTTPError(
                503, f"The hub did not list its users ({e}); try again soon"
            ) from None
        held = self.allocator.allocations()
        rows, served = [], []
        for model in sorted(models, key=lambda m: m["name"]):
            jobs = await asyncio.to_thread(self.jobs.list, model["name"])
            endpoints = await asyncio.to_thread(self.endpoints.list, model["name"])
            rows.append(user_row(model, jobs, endpoints, held))
            served += [endpoint_row(e, self.traffic, self.rollouts) for e in endpoints]
        summary = self.allocator.summary()
        queue = self.queue
        schedules = await asyncio.to_thread(self.schedules.list) if self.schedules else []
        self.write_json(
            {
                "users": rows,
                "endpoints": served,
                "schedules": [schedule_row(s) for s in schedules],
                "gpus": {"total": summary["total"], "free": summary["free"]},
                "queue": queue.snapshot() if queue is not None else [],
                "recent_use": queue.recent_use() if queue is not None else {},
            }
        )


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [(api + "/team", TeamHandler, args)]
