"""Real KubeSpawner pod manifests without a cluster (a throwaway kubeconfig)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: hub}}]
current-context: none
"""


def use_throwaway_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner loads a kubeconfig when it starts; nothing here talks to it."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    from kubernetes_asyncio.config import kube_config

    # read when kubernetes_asyncio is imported, so set the module's value itself
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def pod_manifest(c, user: str, slug: str) -> dict:
    """The pod KubeSpawner (configured by ``c``) makes for ``user`` picking profile ``slug``."""
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    async def build() -> dict:
        spawner = KubeSpawner(config=c, _mock=True)
        spawner.user.name = user
        spawner.user_options = {"profile": slug}
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as client:
            return client.sanitize_for_serialization(pod)

    # in a thread of its own: the browser tests' Playwright keeps a loop running in this one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, build()).result()
