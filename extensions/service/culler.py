"""Idle culling per profile: servers holding GPUs are stopped sooner than CPU servers.

jupyterhub-idle-culler has one timeout for every server; Hubforge's profiles each have their
own (``idle_timeout`` in a profile, else ``Workbench.gpu_idle_timeout`` for GPU profiles and
``Workbench.idle_timeout`` for the rest). The hubforge service runs this check in both modes:
it reads the servers' ``last_activity`` from the hub (the same signal jupyterhub-idle-culler
uses) and stops those idle longer than their profile allows.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..profiles import validate_profiles
from .hub_api import all_users, hub_request

log = logging.getLogger("hubforge.culler")


def idle_timeout(profile: dict[str, Any], cpu_default: int, gpu_default: int) -> int:
    """Seconds a server of ``profile`` may stay idle (0: never culled)."""
    if profile.get("idle_timeout") is not None:
        return int(profile["idle_timeout"])
    return gpu_default if profile.get("gpus") else cpu_default


def idle_note(seconds: int) -> str:
    """What the spawn page says about a profile's idle limit."""
    if not seconds:
        return "never stopped when idle"
    if seconds % 3600 == 0:
        amount = f"{seconds // 3600} h"
    elif seconds >= 60:
        amount = f"{round(seconds / 60)} min"
    else:
        amount = f"{seconds} s"
    return f"stops after {amount} idle"


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class IdleServer:
    user: str
    server: str
    profile: str
    idle_s: float
    timeout_s: int


class IdleCuller:
    """Finds and stops servers idle longer than their profile's timeout."""

    def __init__(
        self,
        profiles: list[dict[str, Any]],
        cpu_timeout: int,
        gpu_timeout: int,
        hub_api: str = "",
        token: str = "",
        logger: logging.Logger = log,
        queued_timeout: int = 0,
        gpus_wanted: Callable[[], int | Awaitable[int]] = lambda: 0,
    ) -> None:
        self.queued_timeout = queued_timeout  # GPU servers' limit while jobs wait for GPUs
        self.gpus_wanted = gpus_wanted  # GPUs the queue's waiting jobs ask for now
        self.profiles = {p["slug"]: p for p in validate_profiles(profiles)}
        self.default = next(p for p in self.profiles.values() if p["default"])
        self.cpu_timeout = cpu_timeout
        self.gpu_timeout = gpu_timeout
        self.hub_api = hub_api.rstrip("/")
        self.token = token
        self.log = logger

    @classmethod
    def from_workbench(
        cls,
        workbench: Any,
        hub_api: str,
        token: str,
        logger: logging.Logger = log,
        gpus_wanted: Callable[[], int | Awaitable[int]] = lambda: 0,
    ) -> IdleCuller:
        return cls(
            workbench.profiles,
            workbench.idle_timeout,
            workbench.gpu_idle_timeout,
            hub_api,
            token,
            logger,
            workbench.gpu_idle_timeout_when_queued,
            gpus_wanted,
        )

    def timeout_for(self, profile: dict[str, Any], wanted: int) -> int:
        """The profile's idle limit; for a GPU profile while jobs wait for ``wanted`` GPUs,
        at most the queued limit."""
        timeout = idle_timeout(profile, self.cpu_timeout, self.gpu_timeout)
        if wanted and profile.get("gpus") and self.queued_timeout:
            return min(timeout, self.queued_timeout) if timeout else self.queued_timeout
        return timeout

    def idle_servers(
        self, users: list[dict[str, Any]], now: datetime, wanted: int = 0
    ) -> list[IdleServer]:
        """The ready servers in ``users`` (hub API user models) that are due to stop
        (``wanted``: GPUs the queue's waiting jobs ask for)."""
        due = []
        for user in users:
            for name, server in (user.get("servers") or {}).items():
                if server.get("pending") or not server.get("ready"):
                    continue  # starting or stopping: the hub is busy with it
                slug = (server.get("user_options") or {}).get("profile") or ""
                profile = self.profiles.get(slug, self.default)
                timeout = self.timeout_for(profile, wanted)
                seen = _time(server.get("last_activity")) or _time(server.get("started"))
                if not timeout or seen is None:
                    continue
                idle = (now - seen).total_seconds()
                if idle > timeout:
                    due.append(IdleServer(user["name"], name, profile["slug"], idle, timeout))
        return due

    async def _hub(self, method: str, path: str) -> Any:
        response = await hub_request(self.hub_api, self.token, method, path)
        if response.code >= 400:
            raise RuntimeError(f"hub API {method} {path}: {response.code} {response.body!r}")
        return json.loads(response.body) if response.body else None

    async def users(self) -> list[dict[str, Any]]:
        """Every user with a ready server, page by page (10,000 users are fine)."""
        return await all_users(self.hub_api, self.token, "state=ready")

    async def cull(self) -> list[IdleServer]:
        """One pass: stop every server that is due; returns what was stopped."""
        wanted = self.gpus_wanted()
        if inspect.isawaitable(wanted):  # Kubernetes: Kueue's pending Workloads, read async
            wanted = await wanted
        due = self.idle_servers(await self.users(), datetime.now(UTC), wanted)
        stopped = []
        for s in due:
            path = f"/users/{quote(s.user, safe='')}/server"
            if s.server:
                path = f"/users/{quote(s.user, safe='')}/servers/{quote(s.server, safe='')}"
            try:
                await self._hub("DELETE", path)
            except RuntimeError as e:
                self.log.warning("Could not stop idle server of %s: %s", s.user, e)
                continue
            self.log.info(
                "Stopped %s's server (%s profile): idle %.0f s, its limit is %d s%s",
                s.user,
                s.profile,
                s.idle_s,
                s.timeout_s,
                f" while jobs wait for {wanted} GPU(s)"
                if wanted and s.timeout_s == self.queued_timeout
                else "",
            )
            stopped.append(s)
        return stopped

    async def cull_safely(self) -> None:
        """cull(), logging instead of raising (runs on a timer)."""
        try:
            await self.cull()
        except Exception as e:  # the hub restarting must not stop the service
            self.log.warning("Idle check failed: %s", e)
