"""The Kubernetes endpoint backend against a fake API server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubforge.serving import BadRequest, NotFound, ServingError, objects
from hubforge.serving.base import check_batching, check_replicas
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
    ours = ("hubforge.io/batching", "hubforge.io/gpus", "hubforge.io/replicas")
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
    assert record["replicas"] == check_replicas(1, 8) and record["ready"] == 0
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


HPA = ("horizontalpodautoscalers", "team-a", "ep-alice-scorer")
PDB = ("poddisruptionbudgets", "team-a", "ep-alice-scorer")
DEPLOYMENT = ("deployments", "team-a", "ep-alice-scorer")
HPA_PATH = "/apis/autoscaling/v2/namespaces/team-a/horizontalpodautoscalers/ep-alice-scorer"
PDB_PATH = "/apis/policy/v1/namespaces/team-a/poddisruptionbudgets/ep-alice-scorer"


def test_replicas_on_deployments_autoscaler_and_disruption_budget_come_and_go(tmp_path):
    """Fixed copies: the Deployment's replicas and a PDB; min < max: an HPA, and a redeploy
    keeps the scale the HPA reached (within the new bounds); undeploy removes them all."""
    fake = FakeKubernetes()
    backend = KubernetesEndpointBackend(configuration(fake, fake.token), SETTINGS, tmp_path)
    try:
        export = saved_model(tmp_path / "users/alice/model")
        record = backend.deploy("alice", "scorer", str(export), replicas=3)
        fixed = {"min": 3, "max": 3, "target_concurrency": None, "target_cpu": None}
        assert record["replicas"] == fixed and record["ready"] == 0
        assert record["running"] is False
        assert fake.objects[DEPLOYMENT]["spec"]["replicas"] == 3
        pdb = fake.objects[PDB]
        assert without_server_fields(pdb) == objects.pod_disruption_budget(
            "alice", "scorer", SETTINGS
        )
        assert HPA not in fake.objects
        fake.objects[DEPLOYMENT]["status"] = {"readyReplicas": 2, "replicas": 3}
        record = backend.get("alice", "scorer")
        assert record["ready"] == 2 and record["running"] is True
        assert backend.list("alice")[0]["ready"] == 2

        # 1..4 on requests in flight: the HPA comes, the PDB goes, the 3 copies stay
        record = backend.deploy("alice", "scorer", str(export), replicas={"min": 1, "max": 4})
        scaled = check_replicas({"min": 1, "max": 4}, 8)
        assert (
            record["replicas"]
            == scaled
            == {
                "min": 1,
                "max": 4,
                "target_concurrency": 8.0,
                "target_cpu": None,
            }
        )
        assert without_server_fields(fake.objects[HPA]) == objects.horizontal_pod_autoscaler(
            "alice", "scorer", scaled, SETTINGS
        )
        assert PDB not in fake.objects and ("DELETE", PDB_PATH) in fake.requests
        assert fake.objects[DEPLOYMENT]["spec"]["replicas"] == 3

        # the HPA scaled it to 4: a new version (replicas not given) keeps 1..4 and the 4
        fake.objects[DEPLOYMENT]["spec"]["replicas"] = 4
        record = backend.deploy("alice", "scorer", str(export))
        assert record["versions"] == [1, 2, 3] and record["replicas"] == scaled
        assert fake.objects[DEPLOYMENT]["spec"]["replicas"] == 4
        # new bounds clamp it
        backend.deploy("alice", "scorer", str(export), replicas={"min": 1, "max": 2})
        assert fake.objects[DEPLOYMENT]["spec"]["replicas"] == 2
        assert fake.objects[HPA]["spec"]["maxReplicas"] == 2
        # 2..5 on CPU: HPA and PDB, the Deployment at 2 at least
        record = backend.deploy(
            "alice", "scorer", str(export), replicas={"min": 2, "max": 5, "target_cpu": 70}
        )
        assert record["replicas"]["target_cpu"] == 70
        metric = fake.objects[HPA]["spec"]["metrics"][0]
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
        assert PDB in fake.objects and fake.objects[DEPLOYMENT]["spec"]["replicas"] == 2

        # back to one copy: neither is left, the Deployment has one
        backend.deploy("alice", "scorer", str(export), replicas=1)
        assert HPA not in fake.objects and PDB not in fake.objects
        assert ("DELETE", HPA_PATH) in fake.requests
        assert fake.objects[DEPLOYMENT]["spec"]["replicas"] == 1

        backend.deploy("alice", "scorer", str(export), replicas={"min": 2, "max": 4})
        assert HPA in fake.objects and PDB in fake.objects
        backend.undeploy("alice", "scorer")
        assert fake.objects == {}
    finally:
        backend.close()
        fake.stop()


def test_replicas_on_kserve(tmp_path):
    """KServe scales its predictor (minReplicas/maxReplicas, CPU); the PDB is ours."""
    fake = FakeKubernetes(crds={"inferenceservices.serving.kserve.io"})
    backend = KubernetesEndpointBackend(configuration(fake, fake.token), SETTINGS, tmp_path)
    isvc = ("inferenceservices", "team-a", "ep-alice-scorer")
    try:
        export = saved_model(tmp_path / "users/alice/model")
        asked = {"min": 2, "max": 5, "target_cpu": 70}
        record = backend.deploy("alice", "scorer", str(export), replicas=asked)
        assert record["replicas"] == check_replicas(asked, 8) and record["ready"] == 0
        predictor = fake.objects[isvc]["spec"]["predictor"]
        assert [predictor[k] for k in ("minReplicas", "maxReplicas", "scaleMetric")] == [
            2,
            5,
            "cpu",
        ]
        assert predictor["scaleTarget"] == 70
        assert PDB in fake.objects and HPA not in fake.objects  # KServe makes its own HPA
        fake.objects[isvc]["status"] = {
            "conditions": [{"type": "Ready", "status": "True"}],
            "modelStatus": {"copies": {"failedCopies": 0, "totalCopies": 3}},
        }
        assert backend.get("alice", "scorer")["ready"] == 3

        # no target named: KServe's CPU default, not requests in flight
        record = backend.deploy("alice", "scorer", str(export), replicas={"min": 1, "max": 4})
        assert record["replicas"]["target_cpu"] == 80
        assert record["replicas"]["target_concurrency"] is None
        assert PDB not in fake.objects
        # asked for explicitly: refused, before the version is copied
        with pytest.raises(
            BadRequest, match="KServe InferenceServices, whose autoscaler scales on CPU"
        ):
            backend.deploy(
                "alice",
                "scorer",
                str(export),
                replicas={"min": 1, "max": 4, "target_concurrency": 4},
            )
        assert backend.get("alice", "scorer")["versions"] == [1, 2]
        backend.undeploy("alice", "scorer")
        assert fake.objects == {}
    finally:
        backend.close()
        fake.stop()


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        (0, "replicas=0: a whole number of copies from 1 to 8 here"),
        (99, "replicas=99: a whole number of copies from 1 to 8 here"),
        ("x", "replicas='x': a number of copies, or an object like"),
        ({"min": 3, "max": 2}, "replicas: min (3) is more than max (2)"),
        ({"min": 1, "max": 9}, "replicas.max=9: a whole number of copies from 1 to 8"),
    ],
)
def test_bad_replicas_are_refused(cluster, tmp_path, replicas, message):
    fake, backend, _ = cluster
    export = saved_model(tmp_path / "users/alice/model")
    with pytest.raises(BadRequest) as e:
        backend.deploy("alice", "scorer", str(export), replicas=replicas)
    assert message in str(e.value)
    assert fake.objects == {}
    assert not (tmp_path / "users/alice/models/scorer").exists()  # nothing copied


def test_an_endpoint_made_before_replicas_says_what_its_spec_has(cluster, tmp_path):
    fake, backend, mode = cluster
    export = saved_model(tmp_path / "users/alice/model")
    backend.deploy("alice", "scorer", str(export))
    kind = "inferenceservices" if mode == "kserve" else "deployments"
    main = fake.objects[(kind, "team-a", "ep-alice-scorer")]
    del main["metadata"]["annotations"]["hubforge.io/replicas"]
    record = backend.get("alice", "scorer")
    assert record["replicas"] == check_replicas(1, 8) and record["ready"] == 0
    # a redeploy without replicas keeps one copy and records it
    backend.deploy("alice", "scorer", str(export))
    assert json.loads(main_annotations(fake, kind)["hubforge.io/replicas"])["max"] == 1


def main_annotations(fake: FakeKubernetes, kind: str) -> dict:
    return fake.objects[(kind, "team-a", "ep-alice-scorer")]["metadata"]["annotations"]
