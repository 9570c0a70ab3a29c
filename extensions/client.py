"""One client for the hubforge service, used by kernels, the CLI and the server extension."""

from __future__ import annotations

import os
from typing import Any

import requests


class ServiceError(RuntimeError):
    """The service refused or failed a call; ``status`` is the HTTP status (0: unreachable)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class ServiceClient:
    """Calls /services/hubforge/api/ with a JupyterHub token.

    Defaults come from the environment of a user's server: ``HUBFORGE_SERVICE_URL`` and
    ``JUPYTERHUB_API_TOKEN``.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        url = url or os.environ.get("HUBFORGE_SERVICE_URL")
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not url or not token:
            raise ServiceError(
                0,
                "No hubforge service configured: run inside a Hubforge server or pass "
                "url= and token= (HUBFORGE_SERVICE_URL, JUPYTERHUB_API_TOKEN)",
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    @classmethod
    def available(cls) -> bool:
        """True when the environment names a service to talk to."""
        return bool(
            os.environ.get("HUBFORGE_SERVICE_URL") and os.environ.get("JUPYTERHUB_API_TOKEN")
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.session.request(
                method, f"{self.url}/{path.lstrip('/')}", timeout=self.timeout, **kwargs
            )
        except requests.RequestException as e:
            raise ServiceError(0, f"hubforge service unreachable at {self.url}: {e}") from e
        if r.status_code >= 400:
            try:
                message = r.json().get("message", r.reason)
            except ValueError:
                message = r.text[:200] or r.reason
            raise ServiceError(r.status_code, f"hubforge service: {message}")
        return r.json() if r.content else None

    def status(self) -> dict[str, Any]:
        return self.request("GET", "status")
