"""Raw Kubernetes API calls for the hubforge service's backends (jobs, endpoints).

kubernetes_asyncio runs on a private event loop in a thread, so the backends keep the same
synchronous interface as the local ones; JSON goes in and comes out.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"


def incluster_configuration() -> client.Configuration:
    """The ServiceAccount credentials of the pod we run in."""
    from kubernetes_asyncio import config

    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return configuration


class KubeAPI:
    def __init__(self, configuration: client.Configuration, name: str = "k8s"):
        """``configuration``: where the API server is and how to authenticate."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.api = self.run(self._client(configuration))
        self._crds: dict[str, bool] = {}

    @staticmethod
    async def _client(configuration: client.Configuration) -> client.ApiClient:
        return client.ApiClient(configuration)  # its HTTP session belongs to our loop

    def run(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the private loop from any thread; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        self.run(self.api.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def call(
        self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None
    ) -> Any:
        """One API call; JSON in, JSON (or text) out; ApiException for a non-2xx answer."""
        response = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            body=body,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
        try:
            text = await response.text()
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=text[:300])
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def delete(self, path: str) -> None:
        """Delete with its dependents; already gone is fine."""
        try:
            await self.call("DELETE", path, {"propagationPolicy": "Foreground"})
        except ApiException as e:
            if e.status != 404:
                raise

    async def crd_exists(self, name: str) -> bool:
        """Whether the cluster has a CustomResourceDefinition (remembered once known)."""
        if name not in self._crds:
            try:
                await self.call("GET", CRD_PATH + name)
                self._crds[name] = True
            except ApiException as e:
                if e.status != 404:
                    raise
                self._crds[name] = False
        return self._crds[name]
