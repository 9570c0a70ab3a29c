"""Kubernetes objects of an endpoint: whole manifests, validated against the real schemas
(Kubernetes via kubernetes-validate, TF Serving's model config via its own protobuf)."""

from __future__ import annotations

import dataclasses

import kubernetes_validate
import pytest
from google.protobuf import text_format

from hubforge.serving import objects
from hubforge.serving.base import check_batching, check_replicas
from hubforge.serving.errors import BadRequest
from tests import protos

K8S_VERSION = "1.30.0"
SETTINGS = objects.ServingSettings(
    namespace="team-a",
    hdfs_volume={"nfs": {"server": "hdfs-nfs.example", "path": "/"}},
    gpu_node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
)
BATCHING = {"max_batch_size": 32, "batch_timeout_ms": 2.0}
LABELS = {
    "app.kubernetes.io/name": "hubforge-endpoint",
    "app.kubernetes.io/managed-by": "hubforge",
    "hubforge.io/owner": "alice",
    "hubforge.io/endpoint": "scorer",
}
MODEL = "/mnt/hdfs/users/alice/models/scorer"


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def expected_container(gpus: int, name: str = "tensorflow-serving") -> dict:
    limits = {"memory": "2Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    return {
        "name": name,
        "image": "tensorflow/serving:2.19.0-gpu" if gpus else "tensorflow/serving:2.19.0",
        "command": ["tensorflow_model_server"],
        "args": [
            "--port=8500",
            "--rest_api_port=8501",
            "--model_config_file=/etc/hubforge/serving/models.config",
            "--model_config_file_poll_wait_seconds=30",
            "--file_system_poll_wait_seconds=2",
            "--allow_version_labels_for_unavailable_models=true",
            "--enable_batching=true",
            "--batching_parameters_file=/etc/hubforge/serving/batching.config",
        ],
        "ports": [
            {"name": "http", "containerPort": 8501, "protocol": "TCP"},
            {"name": "grpc", "containerPort": 8500, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/v1/models/scorer", "port": 8501},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "tcpSocket": {"port": 8501},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
        },
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": limits},
        "volumeMounts": [
            {
                "name": "hdfs",
                "mountPath": MODEL,
                "subPath": "users/alice/models/scorer",
                "readOnly": True,
            },
            {"name": "config", "mountPath": "/etc/hubforge/serving", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def expected_pod(gpus: int, container_name: str = "tensorflow-serving") -> dict:
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [expected_container(gpus, container_name)],
        "volumes": [
            {"name": "hdfs", "nfs": {"server": "hdfs-nfs.example", "path": "/"}},
            {"name": "config", "configMap": {"name": "ep-alice-scorer"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if gpus:
        pod["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
        pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return pod


@pytest.mark.parametrize("gpus", [0, 1])
def test_deployment_and_service(gpus):
    cm, deployment, service = objects.endpoint_objects(
        "alice", "scorer", [1, 2], {}, gpus, BATCHING, SETTINGS, kserve=False
    )
    meta = {"name": "ep-alice-scorer", "namespace": "team-a", "labels": LABELS}
    selector = {"hubforge.io/owner": "alice", "hubforge.io/endpoint": "scorer"}
    assert deployment == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": LABELS}, "spec": expected_pod(gpus)},
        },
    }
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": 8501, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": 8500, "targetPort": "grpc", "protocol": "TCP"},
            ],
        },
    }
    assert cm["metadata"] == meta and set(cm["data"]) == {"models.config", "batching.config"}
    for obj in (cm, deployment, service):
        validate(obj)


@pytest.mark.parametrize("gpus", [0, 1])
def test_hubforge_model_server_runs_with_the_same_flags(gpus):
    """endpointServer: hubforge -> the single-user image runs hubforge-model-server with
    TF Serving's flags (and listens on the pod's address); everything else is the same."""
    ours = dataclasses.replace(
        SETTINGS, server="hubforge", image="hf/singleuser:1", gpu_image="hf/singleuser-cuda:1"
    )
    theirs = objects.endpoint_objects(
        "alice", "scorer", [1, 2], {}, gpus, BATCHING, SETTINGS, kserve=False
    )[1]["spec"]["template"]["spec"]
    pod = objects.endpoint_objects(
        "alice", "scorer", [1, 2], {}, gpus, BATCHING, ours, kserve=False
    )[1]["spec"]["template"]["spec"]
    (mine,), (tf,) = pod["containers"], theirs["containers"]
    assert mine["command"] == ["hubforge-model-server"]
    assert mine["image"] == ("hf/singleuser-cuda:1" if gpus else "hf/singleuser:1")
    assert mine["args"] == [*tf["args"], "--host=0.0.0.0"]
    assert mine["env"] == [{"name": "HOME", "value": "/tmp"}]
    rest = ("command", "args", "image", "env")
    assert {k: v for k, v in mine.items() if k not in rest} == {
        k: v for k, v in tf.items() if k not in rest
    }
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod})


def test_inference_service_runs_the_same_container():
    cm, isvc = objects.endpoint_objects(
        "alice", "scorer", [1], {}, 1, BATCHING, SETTINGS, kserve=True
    )
    assert cm["kind"] == "ConfigMap"
    pod = expected_pod(1, "kserve-container")
    pod["containers"][0]["ports"] = [{"containerPort": 8501, "protocol": "TCP"}]
    assert isvc == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "ep-alice-scorer",
            "namespace": "team-a",
            "labels": LABELS,
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, **pod}},
    }
    # The predictor is a PodSpec plus KServe's fields: the pod part must be a valid Pod.
    predictor = dict(isvc["spec"]["predictor"])
    del predictor["minReplicas"], predictor["maxReplicas"]
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": predictor})


def parse_model_config(text: str) -> protos.model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, protos.model_server_config_pb2.ModelServerConfig())


def test_model_config_is_what_tf_serving_parses():
    latest = parse_model_config(objects.model_config("alice", "scorer", [1, 2, 3], {}))
    (config,) = latest.model_config_list.config
    assert config.name == "scorer" and config.base_path == MODEL
    assert config.model_platform == "tensorflow"
    assert config.model_version_policy.latest.num_versions == 1

    labelled = parse_model_config(
        objects.model_config("alice", "scorer", [1, 2, 3], {"stable": 1, "canary": 3})
    )
    (config,) = labelled.model_config_list.config
    assert list(config.model_version_policy.specific.versions) == [1, 3]
    assert dict(config.version_labels) == {"stable": 1, "canary": 3}


def test_batching_config_and_off():
    text = objects.batching_config({"max_batch_size": 16, "batch_timeout_ms": 1.5})
    assert "max_batch_size { value: 16 }" in text
    assert "batch_timeout_micros { value: 1500 }" in text
    cm, deployment, _ = objects.endpoint_objects(
        "alice", "scorer", [1], {}, 0, check_batching(None), SETTINGS, kserve=False
    )
    assert set(cm["data"]) == {"models.config"}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any("batching" in a for a in args)


def test_names_fit_kubernetes_for_any_owner():
    assert objects.object_name("alice", "scorer") == "ep-alice-scorer"
    odd = objects.object_name("Bob.Smith@example.org", "a" * 40)
    assert len(odd) <= 52 and odd.startswith("ep-bob-smith-ex-")
    assert odd != objects.object_name("bob-smith@example.org", "a" * 40)
    validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": odd}, "data": {}})


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        ([32], "an object like"),
        ({"max_batch": 32}, "unknown ['max_batch']"),
        ({"max_batch_size": -1}, "an integer from 0 (off) to 4096"),
        ({"max_batch_size": True}, "an integer from 0 (off) to 4096"),
        ({"batch_timeout_ms": "2"}, "a number of ms from 0 to 1000"),
    ],
)
def test_bad_batching_settings(batching, message):
    with pytest.raises(BadRequest) as e:
        check_batching(batching)
    assert message in str(e.value)


SELECTOR = {"hubforge.io/owner": "alice", "hubforge.io/endpoint": "scorer"}
META = {"name": "ep-alice-scorer", "namespace": "team-a", "labels": LABELS}


def build(replicas, kserve: bool = False, gpus: int = 0) -> dict[str, dict]:
    made = objects.endpoint_objects(
        "alice", "scorer", [1], {}, gpus, BATCHING, SETTINGS, kserve, replicas
    )
    assert len({o["kind"] for o in made}) == len(made)
    for obj in made:
        if obj["kind"] != "InferenceService":  # a CRD: its predictor is a PodSpec plus fields
            validate(obj)
    return {o["kind"]: o for o in made}


def test_fixed_copies_make_a_deployment_of_that_many_and_a_disruption_budget():
    made = build(check_replicas(3, 8))
    assert list(made) == ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    spec = made["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert made["PodDisruptionBudget"] == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": META,
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": SELECTOR},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    # the PDB selects what the Service and the Deployment select: the endpoint's pods
    assert made["Service"]["spec"]["selector"] == SELECTOR == spec["selector"]["matchLabels"]


@pytest.mark.parametrize("replicas", [None, 1, {"min": 1, "max": 1}])
def test_one_copy_makes_no_autoscaler_and_no_disruption_budget(replicas):
    """A PDB over one pod would block node drains (or, with maxUnavailable 1, guard nothing)."""
    settings = None if replicas is None else check_replicas(replicas, 8)
    for kserve in (False, True):
        made = build(settings, kserve)
        assert not {"HorizontalPodAutoscaler", "PodDisruptionBudget"} & set(made)
    assert build(settings)["Deployment"]["spec"]["replicas"] == 1


def test_scaling_on_requests_in_flight_makes_an_autoscaler_on_a_pods_metric():
    made = build(check_replicas({"min": 1, "max": 4, "target_concurrency": 2.5}, 8))
    assert list(made) == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert made["Deployment"]["spec"]["replicas"] == 1  # min; the HPA takes it from there
    assert made["HorizontalPodAutoscaler"] == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": META,
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "ep-alice-scorer",
            },
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "hubforge_endpoint_requests_in_flight"},
                        "target": {"type": "AverageValue", "averageValue": "2500m"},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    # the default target (8 in flight), under the cluster's own metric name
    ours = dataclasses.replace(SETTINGS, concurrency_metric="tf_serving_in_flight")
    hpa = objects.horizontal_pod_autoscaler(
        "alice", "scorer", check_replicas({"min": 1, "max": 4}, 8), ours
    )
    assert hpa["spec"]["metrics"][0]["pods"] == {
        "metric": {"name": "tf_serving_in_flight"},
        "target": {"type": "AverageValue", "averageValue": "8"},
    }
    validate(hpa)


def test_scaling_on_cpu_from_two_copies_makes_an_autoscaler_and_a_disruption_budget():
    made = build(check_replicas({"min": 2, "max": 5, "target_cpu": 70}, 8), gpus=1)
    assert list(made) == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert made["Deployment"]["spec"]["replicas"] == 2
    spec = made["HorizontalPodAutoscaler"]["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 5)
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
    ]


@pytest.mark.parametrize(("value", "text"), [(8.0, "8"), (2.5, "2500m"), (0.1, "100m"), (12, "12")])
def test_quantities(value, text):
    assert objects.quantity(value) == text


def test_kserve_scales_its_predictor_on_cpu_and_gets_the_same_disruption_budget():
    made = build(check_replicas({"min": 2, "max": 5, "target_cpu": 70}, 8), kserve=True)
    assert list(made) == ["ConfigMap", "InferenceService", "PodDisruptionBudget"]
    predictor = made["InferenceService"]["spec"]["predictor"]
    assert {
        k: predictor[k] for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")
    } == {
        "minReplicas": 2,
        "maxReplicas": 5,
        "scaleMetric": "cpu",
        "scaleTarget": 70,
    }
    # KServe puts the InferenceService's labels on its predictor pods: the PDB selects them
    assert made["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == SELECTOR
    fixed = build(check_replicas(3, 8), kserve=True)["InferenceService"]["spec"]["predictor"]
    assert (fixed["minReplicas"], fixed["maxReplicas"]) == (3, 3)
    assert "scaleMetric" not in fixed and "scaleTarget" not in fixed
    # KServe's raw-deployment autoscaler has no requests-in-flight metric
    with pytest.raises(ValueError, match="CPU only"):
        build(check_replicas({"min": 1, "max": 4}, 8), kserve=True)
