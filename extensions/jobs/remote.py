"""JobBackend over the hubforge service: what kernels and the CLI use inside a hub.

The service takes the owner from the token, so ``owner`` is only informative here.
"""

from __future__ import annotations

from typing import Any

from ..client import ServiceClient, ServiceError
from .base import JobBackend
from .errors import JobError, JobNotFound
from .spec import JobSpec


def call_service(
    client: ServiceClient,
    method: str,
    path: str,
    errors: tuple[int, ...] = (400, 409, 413),
    **kwargs: Any,
) -> Any:
    """``client.request``; the service's 404 as JobNotFound, ``errors`` as JobError (with the
    service's message and status), anything else as it came."""
    try:
        return client.request(method, path, **kwargs)
    except ServiceError as e:
        if e.status == 404:
            raise JobNotFound(str(e)) from None
        if e.status in errors:
            raise JobError(str(e), e.status) from None
        raise


class ServiceJobBackend(JobBackend):
    @classmethod
    def from_workbench(cls, workbench: Any) -> ServiceJobBackend:
        raise TypeError("ServiceJobBackend is the client side; the service cannot run it")

    def __init__(self, client: ServiceClient):
        self.client = client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return call_service(self.client, method, path, **kwargs)

    def submit(
        self,
        owner: str,
        spec: JobSpec,
        script: str,
        job_id: str | None = None,
        queued: bool = False,  # the service decides
        notify: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``notify``: tell the owner when it ends (hubforge.jobs.watch: the service only)."""
        body: dict[str, Any] = {"spec": spec.to_dict(), "script": script}
        if notify is not None:
            body["notify"] = notify
        return self._call("POST", "jobs", json=body)

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"jobs/{job_id}")

    def list(self, owner: str) -> list[dict[str, Any]]:
        return self._call("GET", "jobs")["jobs"]

    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"jobs/{job_id}")

    def logs(self, owner: str, job_id: str, replica: str, offset: int = 0) -> tuple[str, int]:
        body = self._call("GET", f"jobs/{job_id}/logs/{replica}", params={"offset": offset})
        return body["text"], body["offset"]

    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"jobs/{job_id}/progress")
