"""The hub's home page lists the signed-in user's jobs, endpoints and labeling projects, and
for admins the team: every user's jobs, endpoints and GPUs.

JupyterHub renders its pages with Jinja in async mode, so a template may call a coroutine:
``home.html`` calls ``hubforge_overview.load()``, which asks the hubforge service (with the
service's own token, for the signed-in user only) and never waits long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

TIMEOUT = 8.0  # Label Studio gets 5 s inside the service; the page never hangs on it


def age(seconds_since_epoch: float | None) -> str:
    """'5 min ago' style, for a job's creation time."""
    if not seconds_since_epoch:
        return ""
    delta = max(0.0, time.time() - seconds_since_epoch)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if delta >= size:
            return f"{int(delta // size)} {unit} ago"
    return "just now"


async def ask(url: str, token: str) -> dict[str, Any]:
    """The service's JSON answer, or {"error": what to tell the reader}."""
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, request_timeout=TIMEOUT)
    try:
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body)
    except (HTTPClientError, OSError, ValueError) as e:
        return {"error": f"The Hubforge service did not answer ({e}); reload in a moment."}


class Overview:
    """What the home page shows of one user; ``load()`` is awaited by the template."""

    def __init__(self, user: str, service_api: str, token: str):
        self.user = user
        self.service_api = service_api.rstrip("/")
        self.token = token

    async def load(self) -> dict[str, Any]:
        data = await ask(
            f"{self.service_api}/users/{quote(self.user, safe='')}/overview", self.token
        )
        for job in data.get("jobs", []):
            job["age"] = age(job.get("created"))
        return data


def overview_var(service_api: str, token: str) -> Callable[[Any], Overview | None]:
    """The ``template_vars`` entry: JupyterHub calls it with the signed-in user (or None)."""

    def for_user(user: Any) -> Overview | None:
        return Overview(user.name, service_api, token) if user is not None else None

    return for_user


class Team:
    """What the home page shows an admin of everyone; ``load()`` is awaited by the template."""

    def __init__(self, service_api: str, token: str):
        self.service_api = service_api.rstrip("/")
        self.token = token

    async def load(self) -> dict[str, Any]:
        return await ask(f"{self.service_api}/team", self.token)


def team_var(service_api: str, token: str) -> Callable[[Any], Team | None]:
    """The ``template_vars`` entry for admins only (None for everyone else)."""

    def for_user(user: Any) -> Team | None:
        return Team(service_api, token) if user is not None and user.admin else None

    return for_user
