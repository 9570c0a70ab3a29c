"""The hubforge service's job routes with the Kubernetes backend (fake API server, the one
part that cannot run here) and a real hub checking the tokens: GPUs come from the cluster's
scheduler, not this machine's inventory; requests are bounded by the profiles; identity only
from hub tokens."""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests
from jupyterhub.services.auth import HubAuth
from tornado import web
from traitlets.config import Config

from hubforge.gpus import GpuAllocator
from hubforge.jobs.handlers import routes
from hubforge.jobs.kubernetes import KubernetesJobBackend
from hubforge.processes import free_port
from hubforge.service.quotas import Quotas
from hubforge.serving.kubernetes import KubernetesEndpointBackend, KubernetesEndpoints
from hubforge.workbench import Workbench
from tests.fake_k8s import FakeKubernetes
from tests.integration.test_jobs_kubernetes import SETTINGS, configuration

pytestmark = pytest.mark.hub
ACCESS = "access:services!service=hubforge"


@pytest.fixture
def hub(workbench):
    """A real hub that answers token checks: the session's (its hubforge service is not
    used here)."""
    return workbench


@pytest.fixture
def service(tmp_path, hub):
    fake = FakeKubernetes(crds={"tfjobs.kubeflow.org"})
    jobs = KubernetesJobBackend(configuration(fake, fake.token), SETTINGS, tmp_path / "hdfs")
    endpoints = KubernetesEndpointBackend(
        configuration(fake, fake.token), KubernetesEndpoints().settings(), tmp_path / "hdfs", 1
    )
    config = Config()
    config.Workbench.data_dir = str(tmp_path / "wb")
    config.Workbench.gpus = []  # the service's machine has no GPUs: the cluster has them
    config.Workbench.profiles = [{"slug": "cpu"}, {"slug": "gpu-2", "gpus": 2}]
    config.Workbench.max_gpus_per_user = 4
    workbench = Workbench(config=config)
    args = {
        "hub_auth": HubAuth(
            api_token=(hub.data_dir / "state" / "service-token").read_text().strip(),
            api_url=hub.url + "hub/api",
            access_scopes={ACCESS},
        ),
        "allocator": GpuAllocator([], tmp_path / "gpus.json"),
        "workbench": workbench,
        "quotas": Quotas.from_workbench(workbench),
        "jobs": jobs,
        "endpoints": endpoints,
    }
    port, loop, started = free_port(), asyncio.new_event_loop(), threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        web.Application(routes("/api", args)).listen(port, "127.0.0.1")
        started.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    started.wait(10)
    yield f"http://127.0.0.1:{port}/api", fake, hub.create_user("k8s-alice")
    loop.call_soon_threadsafe(loop.stop)
    jobs.close()
    endpoints.close()
    fake.stop()


def submit(url, spec, token):
    return requests.post(
        url + "/jobs",
        json={"script": "print('train')\n", "spec": spec},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


def test_gpu_jobs_go_to_the_cluster_scheduler(service):
    url, fake, alice = service
    r = submit(url, {"name": "big", "workers": 2, "gpus_per_worker": 2}, alice)
    assert r.status_code == 201, r.text  # no "only 0 of 0 GPUs free" from a local inventory
    (tfjob,) = fake.of_kind("tfjobs")
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    (container,) = worker["template"]["spec"]["containers"]
    assert worker["replicas"] == 2
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in {e["name"] for e in container.get("env", [])}


def test_requests_are_bounded_by_profiles_and_quotas(service):
    url, fake, alice = service
    r = submit(url, {"name": "huge", "workers": 1, "gpus_per_worker": 8}, alice)
    assert r.status_code == 400
    assert "gpus_per_worker=8: the largest profile offers at most 2" in r.json()["message"]
    r = submit(url, {"name": "wide", "workers": 3, "gpus_per_worker": 2}, alice)
    assert r.status_code == 403, r.text
    assert "needs 6 GPUs; you use 0 of your 4" in r.json()["message"]
    assert fake.of_kind("tfjobs") == []
    # no token, or a token the hub does not know: refused, nothing created
    assert submit(url, {"name": "x", "workers": 1}, token="").status_code == 403
    assert submit(url, {"name": "x", "workers": 1}, token="forged").status_code == 403
    assert fake.of_kind("tfjobs") == []
