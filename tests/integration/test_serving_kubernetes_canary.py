"""A canary on Kubernetes endpoints (#36), against the fake API server, with a real model
server standing in for the endpoint's pod: it serves the model config the backend puts in
the endpoint's ConfigMap, copied into its config file as the kubelet copies a ConfigMap into
a pod, and reloads it as TF Serving does (--model_config_file_poll_wait_seconds). So the pin
of the stable version, the canary's version and the rollback are what the pods would
serve."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time

import pytest
import requests

from hubforge.processes import free_port
from hubforge.serving import ServingError, objects
from hubforge.serving.kubernetes import KubernetesEndpointBackend
from hubforge.serving.rollout import STABLE_LABEL
from tests.fake_k8s import FakeKubernetes
from tests.integration.test_jobs_kubernetes import configuration
from tests.models import keras_model, model_server

NS = "team-a"
NAME = "ep-alice-scorer"


class Kubelet:
    """Copies the endpoint's ConfigMap into the pod's config file (paths under the HDFS
    mount mapped to the test's data root), as a kubelet syncs a ConfigMap volume."""

    def __init__(self, fake: FakeKubernetes, data_root, file):
        self.fake, self.data_root, self.file = fake, data_root, file
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sync(self) -> None:
        cm = self.fake.objects.get(("configmaps", NS, NAME))
        if cm is None:
            return
        text = cm["data"]["models.config"].replace("/mnt/hdfs", str(self.data_root))
        if not self.file.exists() or self.file.read_text() != text:
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.file)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.sync()


def add_pod(fake: FakeKubernetes, pod: str, port: int) -> None:
    fake.objects[("pods", NS, pod)] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "namespace": NS,
            "labels": objects.labels("alice", "scorer"),
        },
        "spec": {
            "containers": [{"name": "serving", "ports": [{"name": "http", "containerPort": port}]}]
        },
        "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def predict(url: str, suffix: str = "") -> float | int:
    r = requests.post(
        f"{url}/v1/models/scorer{suffix}:predict", json={"instances": [[1, 1, 1, 1]]}, timeout=30
    )
    return r.json()["predictions"][0][0] if r.status_code == 200 else r.status_code


def until(check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.2)
    return value


@pytest.mark.timeout(300)
def test_a_canary_pins_the_stable_version_in_the_pods_and_rolls_back(tmp_path):
    fake = FakeKubernetes()
    settings = dataclasses.replace(objects.ServingSettings(namespace=NS), canary_wait_s=60)
    backend = KubernetesEndpointBackend(configuration(fake, fake.token), settings, tmp_path)
    exports = tmp_path / "users" / "alice" / "exports"
    keras_model(exports, 1, bias=1.0)  # y = sum(x) + 1
    keras_model(exports, 2, bias=2.0)  # y = sum(x) + 2
    kubelet = Kubelet(fake, tmp_path, tmp_path / "models.config")
    pod = None
    try:
        backend.deploy("alice", "scorer", str(exports / "1"))
        fake.objects[("deployments", NS, NAME)]["status"] = {"readyReplicas": 1}
        kubelet.sync()
        kubelet.thread.start()
        port = free_port()
        command = [sys.executable, "-m", "hubforge.serving.server", "--rest_api_port", str(port)]
        command += [f"--model_config_file={kubelet.file}"]
        command += ["--model_config_file_poll_wait_seconds=1"]
        pod, url = model_server(command, port)
        add_pod(fake, "ep-alice-scorer-0", port)
        until(lambda: predict(url) == 5.0)

        # the pin: the ConfigMap serves version 1 under the stable label, and the pod has
        # reloaded it before anything new is copied in
        assert backend.begin_canary("alice", "scorer") == 1
        base = tmp_path / "users" / "alice" / "models" / "scorer"
        assert json.loads((base / "labels.json").read_text()) == {STABLE_LABEL: 1}
        config = fake.objects[("configmaps", NS, NAME)]["data"]["models.config"]
        assert "specific { versions: 1 }" in config and f'key: "{STABLE_LABEL}" value: 1' in config
        assert predict(url, f"/labels/{STABLE_LABEL}") == 5.0

        # the canary's version: both served side by side once the pod has it
        record = backend.deploy("alice", "scorer", str(exports / "2"))
        assert record["versions"] == [1, 2]
        backend.wait_served("alice", "scorer", 2)
        assert predict(url, "/versions/1") == 5.0 and predict(url, "/versions/2") == 6.0

        # rolled back: version 2 kept aside and no longer served; version 1 serves all
        backend.end_canary("alice", "scorer", 2, promoted=False)
        assert not (base / "2").exists() and list(base.glob(".rolled-back-2-*"))
        assert STABLE_LABEL not in json.loads((base / "labels.json").read_text())
        config = fake.objects[("configmaps", NS, NAME)]["data"]["models.config"]
        assert "latest { num_versions: 1 }" in config
        until(lambda: predict(url, "/versions/2") == 404)
        assert predict(url) == 5.0

        # a pod that never reloads its config (here: nothing answers at its address): the
        # canary does not begin, and the pin it asked for goes again
        add_pod(fake, "ep-alice-scorer-stuck", free_port())
        backend.settings.canary_wait_s = 3
        with pytest.raises(ServingError, match="was not served by 1 of its 2 ready pods"):
            backend.begin_canary("alice", "scorer")
        assert STABLE_LABEL not in json.loads((base / "labels.json").read_text())
        assert "latest" in fake.objects[("configmaps", NS, NAME)]["data"]["models.config"]
    finally:
        kubelet.stop.set()
        if pod is not None:
            pod.terminate()
            pod.wait(30)
        backend.close()
        fake.stop()
