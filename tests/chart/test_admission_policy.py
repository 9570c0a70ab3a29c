"""The chart's ValidatingAdmissionPolicy, rendered by the real helm, validated against the
Kubernetes 1.30 schema, and its CEL expressions run (cel-python) on what the builders make
(admitted) and on tampered copies (refused, each with its message)."""

from __future__ import annotations

import copy
import json

import celpy
import kubernetes_validate
import pytest

from hubforge.jobs import objects as job_builders
from hubforge.jobs.spec import JobSpec
from hubforge.serving import objects as endpoint_builders
from tests.chart.test_chart import K8S_VERSION, by_kind, chart, render  # noqa: F401
from tests.pod_security import pod_specs

SERVICE = "system:serviceaccount:hub:hubforge-service"
PVC = {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}}


@pytest.fixture(scope="module")
def policy(chart):  # noqa: F811
    docs = by_kind(render(chart))
    vap = docs[("ValidatingAdmissionPolicy", "hf-hubforge-workloads")]
    binding = docs[("ValidatingAdmissionPolicyBinding", "hf-hubforge-workloads")]
    for obj in (vap, binding):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "hf-workloads"
    }
    # what built() uses is what the chart hands the service
    config = json.loads(docs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"])
    assert config["KubernetesWorkloads"] == {"namespace": "hf-workloads", "hdfs_volume": PVC}
    return vap


def admit(vap: dict, obj: dict, username: str = SERVICE) -> list[str] | None:
    """None when the policy does not apply; else the messages of failed validations."""
    env = celpy.Environment()

    def run(expression: str, activation: dict):
        result = env.program(env.compile(expression)).evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            raise AssertionError(f"{expression}: {result}")
        return result

    activation = {
        "object": celpy.json_to_cel(obj),
        "request": celpy.json_to_cel({"userInfo": {"username": username}}),
    }
    if not all(run(c["expression"], activation) for c in vap["spec"]["matchConditions"]):
        return None
    variables = {}
    for variable in vap["spec"]["variables"]:
        activation["variables"] = celpy.celtypes.MapType(variables)
        variables[celpy.celtypes.StringType(variable["name"])] = run(
            variable["expression"], activation
        )
    activation["variables"] = celpy.celtypes.MapType(variables)
    return [
        v["message"] for v in vap["spec"]["validations"] if not run(v["expression"], activation)
    ]


def built() -> list[dict]:
    """Every workload object the builders make, with the chart's default images."""
    jobs = job_builders.ClusterSettings(
        namespace="hf-workloads", image="hubforge/singleuser:0.1.0", hdfs_volume=PVC
    )
    serving = endpoint_builders.ServingSettings(namespace="hf-workloads", hdfs_volume=PVC)
    # endpointServer: hubforge runs Hubforge's model server in the single-user images
    ours = endpoint_builders.ServingSettings(
        namespace="hf-workloads",
        hdfs_volume=PVC,
        server="hubforge",
        image="hubforge/singleuser:0.1.0",
        gpu_image="hubforge/singleuser-cuda:0.1.0",
    )
    objects = []
    for tfjob in (True, False):
        spec = JobSpec(name="m", workers=2, gpus_per_worker=1)
        objects += job_builders.job_objects("alice", "m-abc123", spec, "x", jobs, tfjob)
    for kserve in (True, False):
        for settings in (serving, ours):
            objects += endpoint_builders.endpoint_objects(
                "alice", "scorer", [1], {}, 1, {"max_batch_size": 0}, settings, kserve
            )
    return [o for o in objects if pod_specs(o)]


def test_what_hubforge_builds_is_admitted(policy):
    objects = built()
    assert {o["kind"] for o in objects} == {"TFJob", "Job", "Deployment", "InferenceService"}
    for obj in objects:
        assert admit(policy, obj) == [], obj["kind"]


def tampered(obj: dict, change) -> dict:
    obj = copy.deepcopy(obj)
    for pod in pod_specs(obj):
        change(pod, obj)
    return obj


def other_owners_area(pod, obj):
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] == "hdfs" and m.get("subPath", "").startswith("users/"):
                m["subPath"] = "users/bob"


def writable_datasets(pod, obj):
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m.get("subPath") == "datasets":
                m["readOnly"] = False


def whole_hdfs(pod, obj):
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] == "hdfs":
                m.pop("subPath", None)


CASES = {
    "another owner's area": (other_owners_area, "owner's area"),
    "datasets writable": (writable_datasets, "owner's area"),
    "the whole HDFS": (whole_hdfs, "owner's area"),
    "a host path": (
        lambda pod, obj: pod.setdefault("volumes", []).append(
            {"name": "hdfs", "hostPath": {"path": "/"}}
        ),
        "never a hostPath",
    ),
    "an extra volume": (
        lambda pod, obj: pod.setdefault("volumes", []).append({"name": "docker", "emptyDir": {}}),
        "only Hubforge's volumes",
    ),
    "another image": (
        lambda pod, obj: pod["containers"][0].update(image="evil/miner:latest"),
        "only Hubforge's images",
    ),
    "eight GPUs": (
        lambda pod, obj: (
            pod["containers"][0]
            .setdefault("resources", {})
            .setdefault("limits", {})
            .update({"nvidia.com/gpu": "8"})
        ),
        "at most 1 GPU(s)",
    ),
    "a service account token": (
        lambda pod, obj: pod.update(automountServiceAccountToken=True),
        "no Kubernetes credentials",
    ),
    "no owner label": (
        lambda pod, obj: obj["metadata"]["labels"].pop("hubforge.io/owner"),
        "hubforge.io/owner",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_workloads_are_refused(policy, case):
    change, message = CASES[case]
    for obj in built():
        if case == "datasets writable" and obj["kind"] in ("Deployment", "InferenceService"):
            continue  # endpoints mount no datasets
        refused = admit(policy, tampered(obj, change))
        assert refused and any(message in m for m in refused), (obj["kind"], refused)


def test_other_accounts_are_not_this_policys_business(policy):
    obj = tampered(built()[0], lambda pod, obj: pod.update(automountServiceAccountToken=True))
    assert admit(policy, obj, username="system:serviceaccount:kube-system:job-controller") is None
