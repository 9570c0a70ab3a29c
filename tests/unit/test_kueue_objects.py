"""Kueue's queue objects and what Hubforge puts on jobs (hubforge.jobs.kueue), validated against
the CRDs of Kueue v0.19.2 as released (../shared/fixtures/kueue-v0.19.2/crds)."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from hubforge.jobs import objects
from hubforge.jobs.kueue import (
    API,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    Flavor,
    QueueSettings,
    local_queue_name,
    queue_labels,
    queue_objects,
    queued,
)
from hubforge.jobs.spec import JobSpec

CRDS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "kueue-v0.19.2" / "crds"
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
SETTINGS = QueueSettings(
    namespace="team-a",
    flavors=[
        Flavor(
            "a100",
            8,
            {"nvidia.com/gpu.product": "A100"},
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        Flavor("t4", 4, {"nvidia.com/gpu.product": "T4"}),
    ],
)


def schemas() -> dict[str, dict]:
    """kind -> the openAPIV3Schema of the version the objects use (v1beta2)."""
    if not CRDS.is_dir():
        pytest.fail(f"Kueue's CRDs are missing: {CRDS} (../shared/fixtures beside the clone)")
    found = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if f"{group}/{version['name']}" == API:
                found[kind] = version["schema"]["openAPIV3Schema"]
    return found


def test_every_queue_object_is_valid_for_kueue():
    kinds = schemas()
    objs = queue_objects(SETTINGS, users=["alice", "Bob.Smith", "bob-smith"])
    assert sorted({o["kind"] for o in objs}) == [
        "ClusterQueue",
        "LocalQueue",
        "ResourceFlavor",
        "WorkloadPriorityClass",
    ]
    for obj in objs:
        jsonschema.validate(obj, kinds[obj["kind"]])
        assert obj["apiVersion"] == API
    # a schema that would not notice is no check: a wrong field fails
    bad = next(o for o in objs if o["kind"] == "ClusterQueue")
    bad = {**bad, "spec": {**bad["spec"], "queueingStrategy": "Random"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, kinds["ClusterQueue"])


def test_the_cluster_queue_holds_the_teams_quotas_per_gpu_type():
    (cq,) = [o for o in queue_objects(SETTINGS) if o["kind"] == "ClusterQueue"]
    (group,) = cq["spec"]["resourceGroups"]
    quotas = {
        f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]
    }
    assert quotas["a100"]["nvidia.com/gpu"] == 8 and quotas["t4"]["nvidia.com/gpu"] == 4
    assert cq["spec"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "team-a"
    }
    assert cq["spec"]["preemption"] == {"withinClusterQueue": "LowerPriority"}
    classes = {
        o["metadata"]["name"]: o["value"]
        for o in queue_objects(SETTINGS)
        if o["kind"] == "WorkloadPriorityClass"
    }
    assert classes == {"hubforge-interactive": 300, "hubforge-normal": 200, "hubforge-batch": 100}


def test_each_user_has_a_queue_of_their_own_with_a_valid_name():
    names = {u: local_queue_name(u) for u in ["alice", "Bob.Smith", "bob-smith", "ü" * 80]}
    assert len(set(names.values())) == len(names)  # distinct, even for look-alike names
    for name in names.values():
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_jobs_are_labelled_for_their_queue_and_created_suspended():
    spec = JobSpec(name="mnist", workers=2, gpus_per_worker=1)
    settings = objects.ClusterSettings(namespace="team-a")
    job = queued(
        objects.indexed_job("alice", "mnist-1", spec, settings), SETTINGS, "alice", "batch"
    )
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][QUEUE_LABEL] == local_queue_name("alice")
    assert job["metadata"]["labels"][PRIORITY_LABEL] == "hubforge-batch"
    assert job["metadata"]["labels"]["hubforge.io/owner"] == "alice"  # kept
    for value in job["metadata"]["labels"].values():
        assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
    tf = queued(objects.tfjob("alice", "mnist-1", spec, settings), SETTINGS, "alice", "normal")
    assert tf["spec"]["runPolicy"]["suspend"] is True
    with pytest.raises(ValueError, match="use one of batch, interactive, normal"):
        queue_labels(SETTINGS, "alice", "urgent")


def test_the_workbenchs_own_priority_classes_label_its_jobs():
    """An admin's classes (Workbench.priority_classes, the chart's priorityClasses) are the
    ones jobs are labelled with, not the defaults."""
    from traitlets.config import Config

    from hubforge.jobs.kubernetes import KubernetesJobs
    from hubforge.workbench import Workbench

    config = Config()
    config.Workbench.priority_classes = [
        {"name": "oncall", "value": 500, "users": ["olga"]},
        {"name": "normal", "value": 200},
    ]
    config.KubernetesJobs.kueue = True
    queue = KubernetesJobs.settings_of(Workbench(config=config)).queue
    assert queue_labels(queue, "olga", "oncall")[PRIORITY_LABEL] == "hubforge-oncall"
    with pytest.raises(ValueError, match="no priority class 'batch'"):
        queue_labels(queue, "olga", "batch")
    assert KubernetesJobs(config=config).cluster_settings().queue.classes[0].name == "interactive"


def test_endpoints_are_labelled_for_their_queue_at_the_serving_class():
    """A Deployment cannot be suspended: Kueue's webhook holds its pods, found by the labels
    on the Deployment (KServe: on the predictor's pods). Endpoints run at the highest class
    open to everyone."""
    from hubforge.jobs.fairshare import classes_from_config
    from hubforge.jobs.kueue import serving_class
    from hubforge.serving import objects as serving
    from hubforge.serving.base import check_batching

    queue = QueueSettings(namespace="team-a")
    s = serving.ServingSettings(namespace="team-a", queue=queue)
    want = {QUEUE_LABEL: local_queue_name("ana"), PRIORITY_LABEL: "hubforge-interactive"}
    for kserve in (False, True):
        objs = serving.endpoint_objects(
            "ana", "scorer", [1], {}, 1, check_batching(None), s, kserve=kserve
        )
        main = next(o for o in objs if o["kind"] in ("Deployment", "InferenceService"))
        assert want.items() <= main["metadata"]["labels"].items()
        if kserve:
            assert want.items() <= main["spec"]["predictor"]["labels"].items()
        others = [o for o in objs if o is not main]
        assert not [o for o in others if QUEUE_LABEL in o["metadata"]["labels"]]
    plain = serving.endpoint_objects(
        "ana", "scorer", [1], {}, 0, check_batching(None), serving.ServingSettings(), False
    )
    assert not [o for o in plain if QUEUE_LABEL in o["metadata"]["labels"]]
    own = classes_from_config(
        [{"name": "oncall", "value": 900, "users": ["olga"]}, {"name": "normal", "value": 200}]
    )
    assert serving_class(QueueSettings(classes=own)) == "normal"  # not a class some cannot use
