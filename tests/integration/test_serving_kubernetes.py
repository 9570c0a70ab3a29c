"""The Kubernetes endpoint backend against a fake API server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubforge.serving import BadRequest, NotFound, ServingError, objects
from hubforge.serving.base import check_batching
from hubforge.serving.kubernetes import KubernetesEndpointBackend
from tests.fake_k8s import FakeKubernetes
from tests.integration.test_jobs_kubernetes import configuration

SETTINGS = objects.ServingSettings(namespace="team-a")


def saved_model(folder: Path) -> Path:
    """Enough of a SavedModel for the copy (the pods load it, not the service)."""
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    (folder / "variables").mkdir()
    return folder


@pytest.fixture(params=["deployment", "kserve"])
def cluster(request, tmp_path):
    crds = {"inferenceservices.serving.kserve.io"} if request.param == "kserve" else set()
    fake = FakeKubernetes(crds=crds)
    backend = KubernetesEndpointBackend(configuration(fake, fake.token), SETTINGS, tmp_path)
    yield fake, backend, request.param
    backend.close()
    fake.stop()


def stored(fake: FakeKubernetes) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in fake.objects.values()}


def without_server_fields(obj: dict) -> dict:
    meta = {
        k: v
        for k, v in obj["metadata"].items()
        if k not in ("uid", "creationTimestamp", "resourceVersion")
    }
    ours = ("hubforge.io/batching", "hubforge.io/gpus")
    annotations = {k: v for k, v in meta.pop("annotations", {}).items() if k not in ours}
    if annotations:
        meta["annotations"] = annotations
    return {**obj, "metadata": meta}


def test_deploy_creates_the_builders_objects_and_redeploy_updates_them(cluster, tmp_path):
    fake, backend, mode = cluster
    export = saved_model(tmp_path / "users/alice/jobs/j1/model")
    batching = {"max_batch_size": 8, "batch_timeout_ms": 1.0}
    record = backend.deploy("alice", "scorer", str(export), batching=batching)
    assert record["versions"] == [1] and record["running"] is False
    assert record["batching"] == batching and record["gpus"] == 0
    assert (tmp_path / "users/alice/models/scorer/1/saved_model.pb").is_file()
    expected = objects.endpoint_objects(
        "alice", "scorer", [1], {}, 0, batching, SETTINGS, kserve=mode == "kserve"
    )
    got = stored(fake)
    assert len(got) == len(expected)
    for obj in expected:
        assert without_server_fields(got[(obj["kind"], obj["metadata"]["name"])]) == obj

    # version 2 with a label: the ConfigMap is replaced in place, batching is kept
    base = tmp_path / "users/alice/models/scorer"
    (base / "labels.json").write_text(json.dumps({"stable": 1}))
    record = backend.deploy("alice", "scorer", str(export))
    assert record["versions"] == [1, 2] and record["batching"] == batching
    config = got_config = stored(fake)[("ConfigMap", "ep-alice-scorer")]["data"]["models.config"]
    assert "versions: 1 versions: 2" in config and 'key: "stable" value: 1' in got_config
    assert ("PUT", "/api/v1/namespaces/team-a/configmaps/ep-alice-scorer") in fake.requests


def test_status_list_target_and_undeploy(cluster, tmp_path):
    fake, backend, mode = cluster
    export = saved_model(tmp_path / "users/alice/model")
    backend.deploy("alice", "scorer", str(export))
    kind = "inferenceservices" if mode == "kserve" else "deployments"
    main = fake.objects[(kind, "team-a", "ep-alice-scorer")]
    if mode == "kserve":
        main["status"] = {
            "conditions": [{"type": "Ready", "status": "True"}],
            "address": {"url": "http://ep-alice-scorer-predictor.team-a.svc.cluster.local"},
        }
    else:
        main["status"] = {"readyReplicas": 1}
    assert backend.get("alice", "scorer")["running"] is True
    assert [r["name"] for r in backend.list("alice")] == ["scorer"]
    assert backend.list("bob") == []
    target = backend.target("alice", "scorer")
    assert target == (
        "http://ep-alice-scorer-predictor.team-a.svc.cluster.local"
        if mode == "kserve"
        else "http://ep-alice-scorer.team-a.svc:8501"
    )
    with pytest.raises(NotFound):
        backend.get("bob", "scorer")
    with pytest.raises(NotFound):
        backend.undeploy("bob", "scorer")
    backend.undeploy("alice", "scorer")
    assert fake.objects == {}
    assert (tmp_path / "users/alice/models/scorer/1").is_dir()  # the model stays


def test_refusals(cluster, tmp_path):
    fake, backend, _ = cluster
    export = saved_model(tmp_path / "users/alice/model")
    with pytest.raises(BadRequest, match="from 0 to 1 per endpoint"):
        backend.deploy("alice", "scorer", str(export), gpus=2)
    with pytest.raises(BadRequest, match="outside your data area"):
        backend.deploy("bob", "scorer", str(export))
    with pytest.raises(BadRequest, match="lowercase letters"):
        backend.deploy("alice", "Scorer!", str(export))
    with pytest.raises(BadRequest, match="max_batch_size"):
        backend.deploy("alice", "scorer", str(export), batching={"max_batch_size": "big"})
    assert fake.objects == {}
    stranger = KubernetesEndpointBackend(configuration(fake, "stolen"), SETTINGS, tmp_path)
    try:
        with pytest.raises(ServingError, match="401"):
            stranger.deploy("alice", "scorer", str(export))
    finally:
        stranger.close()
    assert check_batching(None) == {"max_batch_size": 0, "batch_timeout_ms": 2.0}


def test_with_kueue_endpoints_wait_at_kueues_gate_in_their_users_queue(tmp_path):
    """With Kueue on (hubforge.queue.kueue), an endpoint's Deployment is labelled for its
    owner's LocalQueue at the serving class; Kueue's webhook holds its pods at the admission
    gate until the quota allows, and the endpoint then says where it waits and why."""
    import jsonschema

    from hubforge.jobs.kueue import PRIORITY_LABEL, QUEUE_LABEL, QueueSettings, local_queue_name
    from tests.integration.test_jobs_kubernetes import kueue_workload
    from tests.unit.test_kueue_objects import schemas

    fake = FakeKubernetes()
    settings = objects.ServingSettings(namespace="team-a", queue=QueueSettings(namespace="team-a"))
    backend = KubernetesEndpointBackend(configuration(fake, fake.token), settings, tmp_path)
    try:
        export = saved_model(tmp_path / "users/alice/model")
        record = backend.deploy("alice", "scorer", str(export))
        assert record["running"] is False and "queue" not in record  # no pod yet
        (queue,) = fake.of_kind("localqueues")  # the same queue her jobs use
        assert queue["metadata"]["name"] == local_queue_name("alice")
        jsonschema.validate(queue, schemas()["LocalQueue"])
        deployment = fake.objects[("deployments", "team-a", "ep-alice-scorer")]
        labels = deployment["metadata"]["labels"]
        assert labels[QUEUE_LABEL] == local_queue_name("alice")
        assert labels[PRIORITY_LABEL] == "hubforge-interactive"  # the highest open to all

        # Kueue's webhook gated the pod and made its Workload, pending for want of quota
        fake.add_pod(
            "team-a",
            "ep-alice-scorer-7d9f-x",
            {"hubforge.io/owner": "alice", "hubforge.io/endpoint": "scorer"},
            "Pending",
        )
        pod = fake.objects[("pods", "team-a", "ep-alice-scorer-7d9f-x")]
        pod["metadata"].update(uid="pod-uid-1", creationTimestamp="2026-12-05T10:00:00Z")
        pod["kind"] = "Pod"
        pod["spec"] = {"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]}
        message = "couldn't assign flavors to pod set main: insufficient unused quota for cpu"
        kueue_workload(fake, "pod-ep-alice-scorer-7d9f-x", pod, 200, message)
        record = backend.get("alice", "scorer")
        assert record["queue"] == {"position": 1, "reason": f"waiting in Kueue's queue: {message}"}
        assert [r["queue"] for r in backend.list("alice")] == [record["queue"]]
        with pytest.raises(NotFound):
            backend.get("bob", "scorer")

        # admitted: the gate is gone, the pod runs, the endpoint is up
        pod["spec"] = {}
        deployment["status"] = {"readyReplicas": 1}
        record = backend.get("alice", "scorer")
        assert record["running"] is True and "queue" not in record
    finally:
        backend.close()
        fake.stop()
