"""A local endpoint and the Kubernetes TF Serving Deployment answer a client identically.

The Kubernetes builder's objects for an endpoint (its ConfigMap's model config and batching
files, its container's TF Serving flags) are run here with our own model server, the volumes
mapped to folders; the local backend deploys the same versions. One client script runs
against both and must see the same answers, byte for byte once parsed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import requests

from hubforge.processes import free_port
from hubforge.serving import objects
from hubforge.serving.base import check_batching
from hubforge.serving.local import LocalEndpointBackend
from hubforge.serving.repository import ModelRepository
from tests.integration.test_tfserving_parity import MODELS
from tests.models import model_server

SCRIPT = Path(sys.executable).parent / "hubforge-model-server"  # the container's command


V2_INFER = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1, 2]}]}


def client(url: str, headers: dict[str, str]) -> list:
    """What an application does with an endpoint (``url``: .../v1/models/clf); every answer
    recorded."""
    v2 = url.replace("/v1/models/clf", "/v2/models/clf")
    calls = [
        ("GET", "", None),
        ("GET", "/versions/1", None),
        ("GET", "/labels/stable", None),
        ("GET", "/metadata", None),
        ("GET", "/labels/stable/metadata", None),
        ("POST", ":predict", {"instances": [[1.0], [2.0]]}),
        ("POST", ":predict", {"inputs": [[1.0]]}),
        ("POST", "/versions/1:predict", {"instances": [[1.0]]}),
        ("POST", "/labels/stable:predict", {"instances": [[4.0]]}),
        (
            "POST",
            "/versions/1:regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]},
        ),
        ("POST", "/labels/nope:predict", {"instances": [[1.0]]}),
        ("POST", "/versions/9:predict", {"instances": [[1.0]]}),
        ("POST", ":predict", {"instances": [["a"]]}),
        ("POST", ":regress", {"examples": [{"x": 1.0}]}),
        # the Open Inference Protocol on the same endpoint
        ("GET", v2, None),
        ("POST", v2 + "/infer", V2_INFER),
        ("POST", v2 + "/versions/1/infer", V2_INFER),
    ]
    answers = []
    with requests.Session() as s:
        s.headers.update(headers)
        for method, suffix, body in calls:
            target = suffix if suffix.startswith("http") else url + suffix
            r = s.request(method, target, json=body, timeout=30)
            answers.append((method, target.split("/", 3)[3], r.status_code, r.json()))
    return answers


def kubernetes_server(tmp: Path, base: Path, labels: dict[str, int], batching: dict) -> tuple:
    """The builder's Deployment for ann/clf with ``endpointServer: hubforge``, run here: its
    command, args and files as the pod would have them, the pod's paths mapped to folders
    here. TF Serving's Deployment gets the very same flags (but the listening address)."""
    s = objects.ServingSettings(server="hubforge")
    cm, deployment, _ = objects.endpoint_objects(
        "ann", "clf", [1, 2], labels, 0, batching, s, kserve=False
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["hubforge-model-server"]
    _, tf_serving, _ = objects.endpoint_objects(
        "ann", "clf", [1, 2], labels, 0, batching, objects.ServingSettings(), kserve=False
    )
    (theirs,) = tf_serving["spec"]["template"]["spec"]["containers"]
    assert theirs["command"] == ["tensorflow_model_server"]
    assert theirs["args"] == [a for a in container["args"] if a != "--host=0.0.0.0"]
    config = tmp / "config"
    config.mkdir()
    pod_model_path = objects.model_path("ann", "clf")
    for name, text in cm["data"].items():
        (config / name).write_text(text.replace(pod_model_path, str(base)))
    port = free_port()
    args = [
        a.replace(objects.CONFIG_MOUNT, str(config))
        .replace(f"--rest_api_port={objects.REST_PORT}", f"--rest_api_port={port}")
        .replace("--host=0.0.0.0", "--host=127.0.0.1")  # the pod's address, here
        for a in container["args"]
    ]
    assert f"--rest_api_port={port}" in args and any("--model_config_file=" in a for a in args)
    return model_server([str(SCRIPT.parent / container["command"][0]), *args], port)


def test_local_and_kubernetes_endpoints_answer_a_client_identically(tmp_path):
    batching = {"max_batch_size": 8, "batch_timeout_ms": 2}  # the ConfigMap's batching file too
    backend = LocalEndpointBackend(tmp_path / "hdfs", tmp_path / "state" / "endpoints.json")
    exports = backend.area("ann") / "exports"
    # TF Serving's test models as two versions: 1 is half_plus_two, 2 half_plus_three
    for version, folder in (
        ("1", "saved_model_half_plus_two_cpu"),
        ("2", "saved_model_half_plus_three"),
    ):
        shutil.copytree(MODELS / folder / "00000123", exports / version)
    backend.deploy("ann", "clf", str(exports / "1"), None, batching)
    backend.deploy("ann", "clf", str(exports / "2"))
    base = backend.area("ann") / "models" / "clf"
    ModelRepository("clf", base).set_label("stable", 1)
    try:
        local_url = backend.target("ann", "clf") + "/v1/models/clf"
        headers = backend.gateway_headers("ann", "clf")
        deadline = time.monotonic() + 60  # the endpoint rescans labels every second
        while requests.get(local_url + "/labels/stable", headers=headers, timeout=10).ok is False:
            assert time.monotonic() < deadline, "the local endpoint never served the label"
            time.sleep(0.3)
        local = client(local_url, headers)

        proc, url = kubernetes_server(tmp_path, base, {"stable": 1}, check_batching(batching))
        try:
            remote = client(url + "/v1/models/clf", {})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        backend.undeploy("ann", "clf")

    statuses = [200] * 10 + [400, 404, 400, 400] + [200] * 3
    assert [a[2] for a in local] == statuses, json.dumps(local)[:2000]
    assert local[5][3] == {"predictions": [[3.5], [4.0]]}  # version 2
    assert local[6][3] == {"outputs": [[3.5]]}
    assert local[7][3] == {"predictions": [[2.5]]}  # version 1 by number
    assert local[8][3] == {"predictions": [[4.0]]}  # version 1 by label
    assert local[9][3] == {"results": [2.5]}
    assert local[15][3]["outputs"][0]["data"] == [3.5, 4.0]  # v2, version 2
    assert local[16][3]["outputs"][0]["data"] == [2.5, 3.0]  # v2, version 1
    assert remote == local
