"""Kubernetes objects of a training job: whole manifests, validated against the real schemas."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from hubforge.jobs import objects
from hubforge.jobs.runner import tf_config_from_index
from hubforge.jobs.spec import JobSpec

K8S_VERSION = "1.30.0"
SETTINGS = objects.ClusterSettings(namespace="team-a", image="registry.example/hf:1.0")
SPEC = JobSpec(name="mnist", workers=2, gpus_per_worker=1, cpu=4, memory="16G", max_restarts=3)
LABELS = {
    "app.kubernetes.io/name": "hubforge-job",
    "app.kubernetes.io/managed-by": "hubforge",
    "hubforge.io/owner": "alice",
    "hubforge.io/job": "mnist-abc123",
}


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def expected_pod(extra_env=(), restart="OnFailure", **pod_fields) -> dict:
    env = {
        "HUBFORGE_DATA": "/mnt/hdfs",
        "HUBFORGE_JOB_DIR": "/mnt/hdfs/users/alice/jobs/mnist-abc123",
        "HUBFORGE_JOB_ID": "mnist-abc123",
        "TF_USE_LEGACY_KERAS": "1",
        "TF_NUM_INTRAOP_THREADS": "4",
        "OMP_NUM_THREADS": "4",
        "PYTHONUNBUFFERED": "1",
    }
    return {
        "metadata": {"labels": LABELS},
        "spec": {
            "serviceAccountName": "hubforge-job",
            "automountServiceAccountToken": False,
            "restartPolicy": restart,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "tensorflow",
                    "image": "registry.example/hf:1.0",
                    "command": [
                        "python",
                        "-m",
                        "hubforge.jobs.runner",
                        "/opt/hubforge/job/script.py",
                    ],
                    "env": [{"name": k, "value": v} for k, v in env.items()] + list(extra_env),
                    "ports": [{"name": "tfjob-port", "containerPort": 2222}],
                    "resources": {
                        "limits": {"cpu": "4", "memory": "16G", "nvidia.com/gpu": "1"},
                        "requests": {"cpu": "4", "memory": "16G"},
                    },
                    "volumeMounts": [
                        {
                            "name": "hdfs",
                            "mountPath": "/mnt/hdfs/users/alice",
                            "subPath": "users/alice",
                        },
                        {
                            "name": "hdfs",
                            "mountPath": "/mnt/hdfs/datasets",
                            "subPath": "datasets",
                            "readOnly": True,
                        },
                        {"name": "script", "mountPath": "/opt/hubforge/job", "readOnly": True},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": False,
                    },
                }
            ],
            "volumes": [
                {"name": "hdfs", "persistentVolumeClaim": {"claimName": "hubforge-hdfs"}},
                {"name": "script", "configMap": {"name": "hf-mnist-abc123"}},
            ],
            **pod_fields,
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    }


def test_tfjob_whole_manifest():
    tfjob = objects.tfjob("alice", "mnist-abc123", SPEC, SETTINGS)
    assert tfjob == {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "hf-mnist-abc123", "namespace": "team-a", "labels": LABELS},
        "spec": {
            "runPolicy": {"backoffLimit": 3, "cleanPodPolicy": "Running"},
            "tfReplicaSpecs": {
                "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": expected_pod()}
            },
        },
    }
    # The CRD's schema is not in kubernetes-validate: validate its pod template as Kubernetes
    # validates it inside the TFJob.
    validate(
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "hf-mnist-abc123-worker", "namespace": "team-a"},
            "template": tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"],
        }
    )


def test_indexed_job_and_headless_service_whole_manifests():
    config_map, policy, service, job = objects.job_objects(
        "alice", "mnist-abc123", SPEC, "print('hi')\n", SETTINGS, tfjob_available=False
    )
    own = [{"podSelector": {"matchLabels": {"hubforge.io/job": "mnist-abc123"}}}]
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "hf-mnist-abc123", "namespace": "team-a", "labels": LABELS},
        "spec": {
            "podSelector": {"matchLabels": {"hubforge.io/job": "mnist-abc123"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": own, "ports": [{"port": 2222, "protocol": "TCP"}]}],
            "egress": [{"to": own, "ports": [{"port": 2222, "protocol": "TCP"}]}],
        },
    }
    assert config_map == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hf-mnist-abc123", "namespace": "team-a", "labels": LABELS},
        "data": {"script.py": "print('hi')\n"},
    }
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hf-mnist-abc123", "namespace": "team-a", "labels": LABELS},
        "spec": {
            "clusterIP": "None",
            "selector": {"hubforge.io/job": "mnist-abc123"},
            "ports": [{"name": "tf", "port": 2222, "targetPort": 2222}],
            "publishNotReadyAddresses": True,
        },
    }
    hosts = (
        "hf-mnist-abc123-0.hf-mnist-abc123.team-a.svc:2222,"
        "hf-mnist-abc123-1.hf-mnist-abc123.team-a.svc:2222"
    )
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hf-mnist-abc123", "namespace": "team-a", "labels": LABELS},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 6,
            "template": expected_pod(
                [{"name": "HUBFORGE_TF_HOSTS", "value": hosts}],
                restart="Never",
                subdomain="hf-mnist-abc123",
            ),
        },
    }
    for obj in (config_map, service, job):
        validate(obj)


def test_cpu_job_has_no_gpu_limit_or_toleration():
    spec = JobSpec(name="small", workers=1)
    (_, _, tfjob) = objects.job_objects(
        "bob", "small-1", spec, "x=1", SETTINGS, tfjob_available=True
    )
    pod = tfjob["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "tolerations" not in pod
    assert pod["containers"][0]["resources"] == {}
    assert pod["automountServiceAccountToken"] is False


def test_strict_validation_catches_a_typo():
    job = objects.indexed_job("alice", "mnist-abc123", SPEC, SETTINGS)
    job["spec"]["completionsMode"] = "Indexed"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)


def test_pods_derive_tf_config_from_their_index(monkeypatch):
    # recorded as absent, so the TF_CONFIG the code sets goes at teardown (it leaked into
    # every later test's kernels and jobs)
    monkeypatch.setenv("TF_CONFIG", "")
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.setenv("HUBFORGE_TF_HOSTS", objects.worker_hosts("j-1", 3, "ns"))
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    tf_config_from_index()
    import os

    config = json.loads(os.environ["TF_CONFIG"])
    assert config["task"] == {"type": "worker", "index": 2}
    assert config["cluster"]["worker"][2] == "hf-j-1-2.hf-j-1.ns.svc:2222"
