"""Pure builders of the Kubernetes objects of a training job (dicts in, dicts out, no I/O).

With the Kubeflow Training Operator installed a job is a ``TFJob``; without it, an Indexed
``Job`` plus a headless ``Service`` whose DNS names each pod uses to build TF_CONFIG.
Both mount the team's HDFS at /mnt/hdfs and receive the script through a ConfigMap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..podspec import (
    DATA_MOUNT,
    GPU_RESOURCE,
    container_security,
    gpu_tolerations,
    pod_security,
    user_data_mounts,
)
from .kueue import QueueSettings
from .spec import JobSpec

SCRIPT_MOUNT = "/opt/hubforge/job"
TF_PORT = 2222


@dataclass
class ClusterSettings:
    """What the cluster provides; filled from the Helm chart's values."""

    namespace: str = "hubforge"
    image: str = "hubforge/singleuser:latest"
    service_account: str = "hubforge-job"
    hdfs_volume: dict[str, Any] = field(
        default_factory=lambda: {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}}
    )
    node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: list[dict[str, Any]] = field(default_factory=gpu_tolerations)
    run_as_user: int = 1000
    # Kueue's queue (hubforge.queue.kueue in the chart): jobs are labelled for their user's
    # LocalQueue and created suspended; None: they start at once
    queue: QueueSettings | None = None


def object_name(job_id: str) -> str:
    return f"hf-{job_id}"


def labels(owner: str, job_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "hubforge-job",
        "app.kubernetes.io/managed-by": "hubforge",
        "hubforge.io/owner": owner,
        "hubforge.io/job": job_id,
    }


def job_dir(owner: str, job_id: str) -> str:
    return f"{DATA_MOUNT}/users/{owner}/jobs/{job_id}"


def script_config_map(owner: str, job_id: str, script: str, s: ClusterSettings) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": object_name(job_id),
            "namespace": s.namespace,
            "labels": labels(owner, job_id),
        },
        "data": {"script.py": script},
    }


def _resources(spec: JobSpec) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if spec.cpu:
        limits["cpu"] = requests["cpu"] = str(spec.cpu)
    if spec.memory:
        limits["memory"] = requests["memory"] = spec.memory
    if spec.gpus_per_worker:
        limits[GPU_RESOURCE] = str(spec.gpus_per_worker)
    result = {}
    if limits:
        result["limits"] = limits
    if requests:
        result["requests"] = requests
    return result


def _env(owner: str, job_id: str, spec: JobSpec, extra: list[dict]) -> list[dict[str, Any]]:
    threads = str(max(1, int(spec.cpu))) if spec.cpu else "2"
    values = {
        "HUBFORGE_DATA": DATA_MOUNT,
        "HUBFORGE_JOB_DIR": job_dir(owner, job_id),
        "HUBFORGE_JOB_ID": job_id,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_NUM_INTRAOP_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        "PYTHONUNBUFFERED": "1",
    }
    return [{"name": k, "value": v} for k, v in values.items()] + extra


def pod_template(
    owner: str,
    job_id: str,
    spec: JobSpec,
    s: ClusterSettings,
    extra_env: list[dict] | None = None,
    **pod_fields: Any,
) -> dict[str, Any]:
    """The worker pod: non-root, HDFS and script mounted, GPUs from the spec."""
    container = {
        "name": "tensorflow",  # the TFJob operator looks for this container name
        "image": s.image,
        "command": ["python", "-m", "hubforge.jobs.runner", f"{SCRIPT_MOUNT}/script.py"],
        "env": _env(owner, job_id, spec, extra_env or []),
        "ports": [{"name": "tfjob-port", "containerPort": TF_PORT}],
        "resources": _resources(spec),
        "volumeMounts": [
            # what the owner's notebook pod mounts, no more: a job is the owner's code
            *user_data_mounts(owner),
            {"name": "script", "mountPath": SCRIPT_MOUNT, "readOnly": True},
        ],
        "securityContext": container_security(read_only_root=False),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": s.service_account,
        "automountServiceAccountToken": False,  # jobs get no Kubernetes credentials
        "restartPolicy": "OnFailure",
        "securityContext": pod_security(s.run_as_user),
        "containers": [container],
        "volumes": [
            {"name": "hdfs", **s.hdfs_volume},
            {"name": "script", "configMap": {"name": object_name(job_id)}},
        ],
        **pod_fields,
    }
    if s.node_selector:
        pod["nodeSelector"] = dict(s.node_selector)
    if spec.gpus_per_worker:
        pod["tolerations"] = [dict(t) for t in s.gpu_tolerations]
    return {"metadata": {"labels": labels(owner, job_id)}, "spec": pod}


def tfjob(owner: str, job_id: str, spec: JobSpec, s: ClusterSettings) -> dict[str, Any]:
    """A Kubeflow TFJob: the operator sets TF_CONFIG and restarts failed workers."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {
            "name": object_name(job_id),
            "namespace": s.namespace,
            "labels": labels(owner, job_id),
        },
        "spec": {
            "runPolicy": {"backoffLimit": spec.max_restarts, "cleanPodPolicy": "Running"},
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": spec.workers,
                    "restartPolicy": "OnFailure",
                    "template": pod_template(owner, job_id, spec, s),
                }
            },
        },
    }


def headless_service(owner: str, job_id: str, s: ClusterSettings) -> dict[str, Any]:
    name = object_name(job_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": s.namespace, "labels": labels(owner, job_id)},
        "spec": {
            "clusterIP": "None",
            "selector": {"hubforge.io/job": job_id},
            "ports": [{"name": "tf", "port": TF_PORT, "targetPort": TF_PORT}],
            "publishNotReadyAddresses": True,  # workers must find each other before ready
        },
    }


def worker_hosts(job_id: str, workers: int, namespace: str) -> str:
    """Stable DNS names of an Indexed Job's pods behind the headless service."""
    name = object_name(job_id)
    return ",".join(f"{name}-{i}.{name}.{namespace}.svc:{TF_PORT}" for i in range(workers))


def indexed_job(owner: str, job_id: str, spec: JobSpec, s: ClusterSettings) -> dict[str, Any]:
    """An Indexed Job; each pod derives TF_CONFIG from JOB_COMPLETION_INDEX."""
    env = [{"name": "HUBFORGE_TF_HOSTS", "value": worker_hosts(job_id, spec.workers, s.namespace)}]
    template = pod_template(owner, job_id, spec, s, env, subdomain=object_name(job_id))
    template["spec"]["restartPolicy"] = "Never"  # the Job controller recreates failed pods
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": object_name(job_id),
            "namespace": s.namespace,
            "labels": labels(owner, job_id),
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.workers,
            "parallelism": spec.workers,
            "backoffLimit": spec.max_restarts * spec.workers,
            "template": template,
        },
    }


def network_policy(owner: str, job_id: str, s: ClusterSettings) -> dict[str, Any]:
    """The job's own workers reach each other on TensorFlow's port (unauthenticated gRPC),
    nothing else does; the chart's default policy denies job pods everything else but DNS
    and HDFS."""
    own = [{"podSelector": {"matchLabels": {"hubforge.io/job": job_id}}}]
    port = [{"port": TF_PORT, "protocol": "TCP"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": object_name(job_id),
            "namespace": s.namespace,
            "labels": labels(owner, job_id),
        },
        "spec": {
            "podSelector": {"matchLabels": {"hubforge.io/job": job_id}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": own, "ports": port}],
            "egress": [{"to": own, "ports": port}],
        },
    }


def job_objects(
    owner: str, job_id: str, spec: JobSpec, script: str, s: ClusterSettings, tfjob_available: bool
) -> list[dict[str, Any]]:
    """Everything to create for one job, in creation order (its network policy before its
    pods)."""
    config_map = script_config_map(owner, job_id, script, s)
    policy = network_policy(owner, job_id, s)
    if tfjob_available:
        return [config_map, policy, tfjob(owner, job_id, spec, s)]
    return [
        config_map,
        policy,
        headless_service(owner, job_id, s),
        indexed_job(owner, job_id, spec, s),
    ]
