"""Every pod the hubforge service can build passes the Pod Security `restricted` profile."""

from __future__ import annotations

import pytest

from hubforge.jobs import objects as job_builders
from hubforge.jobs.spec import JobSpec
from hubforge.serving import objects as endpoint_builders
from tests.pod_security import pod_specs, restricted_violations

PVC = {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}}


def test_the_checker_finds_each_kind_of_violation():
    bad = {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {}}],
        "containers": [
            {
                "name": "c",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
            }
        ],
    }
    found = "\n".join(restricted_violations(bad))
    for rule in (
        "hostNetwork",
        "volume h: hostPath",
        "volume n: nfs",
        "runAsUser 0",
        "Unconfined",
        "privileged",
        "hostPort 80",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "drop ALL",
        "SYS_ADMIN",
    ):
        assert rule in found, rule
    good = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "x"}}],
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
    }
    assert restricted_violations(good) == []


@pytest.mark.parametrize("tfjob", [True, False], ids=["TFJob", "Indexed Job"])
@pytest.mark.parametrize("gpus", [0, 2])
def test_job_pods_are_restricted(tfjob, gpus):
    settings = job_builders.ClusterSettings(namespace="w", image="i", hdfs_volume=PVC)
    spec = JobSpec(name="m", workers=2, gpus_per_worker=gpus)
    built = job_builders.job_objects("alice", "m-abc123", spec, "print(1)", settings, tfjob)
    pods = [p for obj in built for p in pod_specs(obj)]
    assert pods
    for pod in pods:
        assert restricted_violations(pod) == []


@pytest.mark.parametrize("server", ["tensorflow-serving", "hubforge"])
@pytest.mark.parametrize("kserve", [True, False], ids=["InferenceService", "Deployment"])
@pytest.mark.parametrize("gpus", [0, 1])
def test_endpoint_pods_are_restricted(kserve, gpus, server):
    settings = endpoint_builders.ServingSettings(namespace="w", hdfs_volume=PVC, server=server)
    built = endpoint_builders.endpoint_objects(
        "alice", "scorer", [1], {}, gpus, {"max_batch_size": 0}, settings, kserve
    )
    pods = [p for obj in built for p in pod_specs(obj)]
    assert pods
    for pod in pods:
        assert restricted_violations(pod) == []
