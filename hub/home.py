"""The hub's home page lists the signed-in user's jobs, endpoints and labeling projects.

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


class Overview:
    """What the home page shows of one user; ``load()`` is awaited by the template."""

    def __init__(self, user: str, service_api: str, token: str):
        self.user = user
        self.service_api = service_api.rstrip("/")
        self.token = token

    async def load(self) -> dict[str, Any]:
        request = HTTPRequest(
            f"{self.service_api}/users/{quote(self.user, safe='')}/overview",
            headers={"Authorization": f"token {self.token}"},
            request_timeout=TIMEOUT,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
            data = json.loads(response.body)
        except (HTTPClientError, OSError, ValueError) as e:
            return {"error": f"The Hubforge service did not answer ({e}); reload in a moment."}
        for job in data.get("jobs", []):
            job["age"] = age(job.get("created"))
        return data


def overview_var(service_api: str, token: str) -> Callable[[Any], Overview | None]:
    """The ``template_vars`` entry: JupyterHub calls it with the signed-in user (or None)."""

    def for_user(user: Any) -> Overview | None:
        return Overview(user.name, service_api, token) if user is not None else None

    return for_user
