"""Pure builders of the Kubernetes objects of an endpoint (dicts in, dicts out, no I/O).

An endpoint is TensorFlow Serving reading the model from the HDFS mount: a ``Deployment``
plus a ``Service``, or, when KServe's CRD exists, an ``InferenceService`` whose predictor runs
the same container. A ``ConfigMap`` carries TF Serving's model config (versions, labels) and
batching parameters.

Replicas (``hubforge.serving.base.check_replicas``'s settings): the Deployment starts at
``min`` copies; between ``min`` and ``max`` a ``HorizontalPodAutoscaler`` scales it (on CPU
use, or on requests in flight per pod through a custom metric); from two copies up a
``PodDisruptionBudget`` keeps all but one serving while nodes drain. KServe scales its own
predictor (``minReplicas``/``maxReplicas``/``scaleMetric``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..jobs.kueue import queued_endpoint
from ..podspec import (
    DATA_MOUNT,
    GPU_RESOURCE,
    container_security,
    gpu_tolerations,
    pod_security,
)

CONFIG_MOUNT = "/etc/hubforge/serving"
REST_PORT = 8501
GRPC_PORT = 8500


@dataclass
class ServingSettings:
    """What the cluster provides; filled from the Helm chart's values."""

    namespace: str = "hubforge"
    image: str = "tensorflow/serving:2.19.0"
    gpu_image: str = "tensorflow/serving:2.19.0-gpu"
    hdfs_volume: dict[str, Any] = field(
        default_factory=lambda: {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}}
    )
    node_selector: dict[str, str] = field(default_factory=dict)
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: list[dict[str, Any]] = field(default_factory=gpu_tolerations)
    cpu: str = "1"
    memory: str = "2Gi"
    run_as_user: int = 1000
    server: str = "tensorflow-serving"  # or "hubforge": hubforge-model-server, same flags
    queue: Any = None  # the team's Kueue settings (hubforge.jobs.kueue.QueueSettings), or None
    max_replicas: int = 8  # the most copies of one endpoint
    # the per-pod metric (custom metrics API, e.g. prometheus-adapter) target_concurrency
    # scales on: requests in flight in one serving pod
    concurrency_metric: str = "hubforge_endpoint_requests_in_flight"
    # a canary's traffic begins once every ready pod serves it (they reload the model
    # config: the kubelet's ConfigMap sync, then the server's 30-s poll)
    canary_wait_s: float = 240.0


FIXED = {"min": 1, "max": 1, "target_concurrency": None, "target_cpu": None}
# how long the HPA waits for the load to stay low before it removes copies (a new copy
# loads its model first, so flapping costs more than an idle copy)
SCALE_DOWN_WINDOW_S = 300


def object_name(owner: str, name: str) -> str:
    """A DNS-1123 name unique per (owner, endpoint), at most 52 characters (KServe adds
    suffixes to an InferenceService's name)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", owner.lower()).strip("-") or "user"
    full = f"ep-{slug}-{name}"
    if len(full) <= 52 and slug == owner:
        return full
    digest = hashlib.sha256(f"{owner}/{name}".encode()).hexdigest()[:8]
    return f"ep-{slug[:12].strip('-')}-{name[:27].strip('-')}-{digest}"


def labels(owner: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "hubforge-endpoint",
        "app.kubernetes.io/managed-by": "hubforge",
        "hubforge.io/owner": owner,
        "hubforge.io/endpoint": name,
    }


def model_path(owner: str, name: str) -> str:
    return f"{DATA_MOUNT}/users/{owner}/models/{name}"


def model_config(owner: str, name: str, versions: list[int], version_labels: dict[str, int]) -> str:
    """TF Serving's model config (text proto): the newest version, plus labelled ones."""
    if version_labels:
        served = sorted({max(versions), *version_labels.values()})
        policy = "specific { " + " ".join(f"versions: {v}" for v in served) + " }"
    else:
        policy = "latest { num_versions: 1 }"
    lines = [
        "model_config_list {",
        "  config {",
        f'    name: "{name}"',
        f'    base_path: "{model_path(owner, name)}"',
        '    model_platform: "tensorflow"',
        f"    model_version_policy {{ {policy} }}",
    ]
    lines += [
        f'    version_labels {{ key: "{label}" value: {version} }}'
        for label, version in sorted(version_labels.items())
    ]
    return "\n".join(lines + ["  }", "}", ""])


def batching_config(batching: dict[str, Any]) -> str:
    return (
        f"max_batch_size {{ value: {batching['max_batch_size']} }}\n"
        f"batch_timeout_micros {{ value: {round(batching['batch_timeout_ms'] * 1000)} }}\n"
        "num_batch_threads { value: 4 }\n"
        "max_enqueued_batches { value: 1000 }\n"
    )


def config_map(
    owner: str,
    name: str,
    versions: list[int],
    version_labels: dict[str, int],
    batching: dict[str, Any],
    s: ServingSettings,
) -> dict[str, Any]:
    data = {"models.config": model_config(owner, name, versions, version_labels)}
    if batching["max_batch_size"] > 1:
        data["batching.config"] = batching_config(batching)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": object_name(owner, name),
            "namespace": s.namespace,
            "labels": labels(owner, name),
        },
        "data": data,
    }


def _server_args(batching: dict[str, Any], hubforge: bool) -> list[str]:
    """TF Serving's flags (our server takes the same ones)."""
    args = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={CONFIG_MOUNT}/models.config",
        "--model_config_file_poll_wait_seconds=30",
        "--file_system_poll_wait_seconds=2",
        "--allow_version_labels_for_unavailable_models=true",
    ]
    if batching["max_batch_size"] > 1:
        args += [
            "--enable_batching=true",
            f"--batching_parameters_file={CONFIG_MOUNT}/batching.config",
        ]
    if hubforge:  # ours listens on loopback unless told
        args.append("--host=0.0.0.0")
    return args


def _model_mounts(owner: str, name: str) -> list[dict[str, Any]]:
    """The model (read-only, only its own folder of the HDFS claim), config and /tmp."""
    path = model_path(owner, name)
    return [
        {
            "name": "hdfs",
            "mountPath": path,
            "subPath": path[len(DATA_MOUNT) + 1 :],
            "readOnly": True,
        },
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def container(
    owner: str,
    name: str,
    gpus: int,
    batching: dict[str, Any],
    s: ServingSettings,
    container_name: str = "tensorflow-serving",
) -> dict[str, Any]:
    """TF Serving: non-root, read-only root and model, ready once the model status answers."""
    hubforge = s.server == "hubforge"
    resources: dict[str, Any] = {
        "requests": {"cpu": s.cpu, "memory": s.memory},
        "limits": {"memory": s.memory},
    }
    if gpus:
        resources["limits"][GPU_RESOURCE] = str(gpus)
    return {
        "name": container_name,
        "image": s.gpu_image if gpus else s.image,
        "command": ["hubforge-model-server" if hubforge else "tensorflow_model_server"],
        "args": _server_args(batching, hubforge),
        "ports": [
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": f"/v1/models/{name}", "port": REST_PORT},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "tcpSocket": {"port": REST_PORT},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
        },
        **({"env": [{"name": "HOME", "value": "/tmp"}]} if hubforge else {}),  # root is read-only
        "resources": resources,
        "volumeMounts": _model_mounts(owner, name),
        "securityContext": container_security(read_only_root=True),
    }


def pod_spec(
    owner: str, name: str, gpus: int, batching: dict[str, Any], s: ServingSettings, **kw: Any
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # endpoints get no Kubernetes credentials
        "securityContext": pod_security(s.run_as_user),
        "containers": [container(owner, name, gpus, batching, s, **kw)],
        "volumes": [
            {"name": "hdfs", **s.hdfs_volume},
            {"name": "config", "configMap": {"name": object_name(owner, name)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    selector = {**s.node_selector, **(s.gpu_node_selector if gpus else {})}
    if selector:
        pod["nodeSelector"] = selector
    if gpus:
        pod["tolerations"] = [dict(t) for t in s.gpu_tolerations]
    return pod


def pod_selector(owner: str, name: str) -> dict[str, str]:
    """The labels that pick one endpoint's pods (Service, Deployment, PDB)."""
    return {"hubforge.io/owner": owner, "hubforge.io/endpoint": name}


def _meta(owner: str, name: str, s: ServingSettings) -> dict[str, Any]:
    return {
        "name": object_name(owner, name),
        "namespace": s.namespace,
        "labels": labels(owner, name),
    }


def deployment(
    owner: str,
    name: str,
    gpus: int,
    batching: dict[str, Any],
    s: ServingSettings,
    replicas: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``spec.replicas`` is ``min``: with an HPA the backend carries the current scale over
    on an update instead (see KubernetesEndpointBackend)."""
    replicas = replicas or FIXED
    selector = pod_selector(owner, name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": object_name(owner, name),
            "namespace": s.namespace,
            "labels": labels(owner, name),
        },
        "spec": {
            "replicas": replicas["min"],
            "selector": {"matchLabels": selector},
            # a new pod becomes ready before the old one goes: no failed requests
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels(owner, name)},
                "spec": pod_spec(owner, name, gpus, batching, s),
            },
        },
    }


def service(owner: str, name: str, s: ServingSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": object_name(owner, name),
            "namespace": s.namespace,
            "labels": labels(owner, name),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"hubforge.io/owner": owner, "hubforge.io/endpoint": name},
            "ports": [
                {"name": "http", "port": REST_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
            ],
        },
    }


def quantity(value: float) -> str:
    """A Kubernetes quantity: 8.0 -> "8", 2.5 -> "2500m"."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def autoscales(replicas: dict[str, Any] | None) -> bool:
    return replicas is not None and replicas["min"] < replicas["max"]


def horizontal_pod_autoscaler(
    owner: str, name: str, replicas: dict[str, Any], s: ServingSettings
) -> dict[str, Any]:
    """autoscaling/v2 over the endpoint's Deployment, between ``min`` and ``max``: on CPU use
    (``target_cpu``, percent of the pod's request) or on requests in flight per pod
    (``target_concurrency``, the custom metric ``s.concurrency_metric``)."""
    if replicas["target_cpu"] is not None:
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": replicas["target_cpu"]},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": s.concurrency_metric},
                "target": {
                    "type": "AverageValue",
                    "averageValue": quantity(replicas["target_concurrency"]),
                },
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, name, s),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": object_name(owner, name),
            },
            "minReplicas": replicas["min"],
            "maxReplicas": replicas["max"],
            "metrics": [metric],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S}},
        },
    }


def pod_disruption_budget(owner: str, name: str, s: ServingSettings) -> dict[str, Any]:
    """policy/v1: a node drain evicts one of the endpoint's pods at a time. Made only for two
    copies or more: over a single pod, ``maxUnavailable: 1`` protects nothing and anything
    stricter would block the drain. Unready pods may always go (a broken endpoint never
    holds a node)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, name, s),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": pod_selector(owner, name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def inference_service(
    owner: str,
    name: str,
    gpus: int,
    batching: dict[str, Any],
    s: ServingSettings,
    replicas: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """KServe v1beta1: the predictor runs the same TF Serving container (KServe's custom
    container name), so labels, batching and the HDFS mount work the same. KServe scales the
    predictor itself (in RawDeployment mode with an HPA of its own): ``scaleMetric: cpu``
    with ``scaleTarget`` in percent; it has no requests-in-flight metric there (KServe's
    ``concurrency`` is Knative's), so ``target_concurrency`` is refused."""
    replicas = replicas or FIXED
    scaling: dict[str, Any] = {"minReplicas": replicas["min"], "maxReplicas": replicas["max"]}
    if autoscales(replicas):
        if replicas["target_cpu"] is None:
            raise ValueError(
                "KServe's RawDeployment autoscaler scales on CPU only: give target_cpu"
            )
        scaling.update(scaleMetric="cpu", scaleTarget=replicas["target_cpu"])
    predictor = pod_spec(owner, name, gpus, batching, s, container_name="kserve-container")
    predictor["containers"][0]["ports"] = [
        {"containerPort": REST_PORT, "protocol": "TCP"}  # KServe routes to the first port
    ]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": object_name(owner, name),
            "namespace": s.namespace,
            "labels": labels(owner, name),
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {"predictor": {**scaling, **predictor}},
    }


def endpoint_objects(
    owner: str,
    name: str,
    versions: list[int],
    version_labels: dict[str, int],
    gpus: int,
    batching: dict[str, Any],
    s: ServingSettings,
    kserve: bool,
    replicas: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Everything to create, in order (the ConfigMap first: the pods mount it). ``replicas``:
    check_replicas's settings (None: one copy). The HPA comes with a Deployment that scales
    (KServe makes its own); the PDB with two copies or more, in both modes (KServe puts the
    InferenceService's labels, ours included, on its predictor pods)."""
    replicas = replicas or FIXED
    cm = config_map(owner, name, versions, version_labels, batching, s)
    build = inference_service if kserve else deployment
    main = build(owner, name, gpus, batching, s, replicas)
    if s.queue is not None:
        main = queued_endpoint(main, s.queue, owner)
    made = [cm, main] if kserve else [cm, main, service(owner, name, s)]
    if not kserve and autoscales(replicas):
        made.append(horizontal_pod_autoscaler(owner, name, replicas, s))
    if replicas["min"] >= 2:
        made.append(pod_disruption_budget(owner, name, s))
    return made
