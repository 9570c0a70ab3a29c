"""The chart's ValidatingAdmissionPolicies, rendered by the real helm (with the released z2jh
chart), validated against the Kubernetes 1.30 schema, and their CEL expressions run
(cel-python) the way the API server runs them: on every object the builders make (admitted)
and on tampered copies (refused, each with its message). The tampered copies include each
sidestep of the 2026-12-04 review (N12)."""

from __future__ import annotations

import copy
import functools
import json

import celpy
import kubernetes_validate
import pytest
from traitlets.config import Config

from hubforge.jobs import objects as job_builders
from hubforge.jobs.kubernetes import KubernetesJobs
from hubforge.jobs.spec import JobSpec
from hubforge.podspec import container_security
from hubforge.serving import objects as endpoint_builders
from hubforge.serving.base import check_replicas
from hubforge.serving.kubernetes import KubernetesEndpoints
from tests.chart.test_chart import K8S_VERSION, LINT_VALUES, by_kind, chart, render  # noqa: F401
from tests.pod_security import pod_specs

SERVICE = "system:serviceaccount:hub:hubforge-service"
PVC = {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}}
POLICIES = ("hf-hubforge-workloads", "hf-hubforge-objects", "hf-hubforge-deletes")
# kind -> (API group, resource), as the API server matches resourceRules
RESOURCES = {
    "Job": ("batch", "jobs"),
    "Deployment": ("apps", "deployments"),
    "TFJob": ("kubeflow.org", "tfjobs"),
    "InferenceService": ("serving.kserve.io", "inferenceservices"),
    "ConfigMap": ("", "configmaps"),
    "Service": ("", "services"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
}
# endpoints of several copies: fixed (Deployment + PDB), scaled on requests in flight (HPA on
# a Pods metric) and on CPU from two copies up (HPA + PDB; KServe: its own fields + PDB)
REPLICAS = [
    check_replicas(3, 8),
    check_replicas({"min": 1, "max": 4}, 8),
    check_replicas({"min": 2, "max": 5, "target_cpu": 70}, 8),
]
VERBS = {"create": "CREATE", "update": "UPDATE", "delete": "DELETE"}


def rendered(chart, *args: str) -> tuple[dict[str, dict], dict]:  # noqa: F811
    """The chart's policies (each with its binding checked) and the service's config."""
    docs = by_kind(render(chart, *args))
    config = json.loads(docs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"])
    namespace = config["KubernetesWorkloads"]["namespace"]
    policies = {}
    for name in POLICIES:
        vap = docs[("ValidatingAdmissionPolicy", name)]
        binding = docs[("ValidatingAdmissionPolicyBinding", name)]
        for obj in (vap, binding):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert vap["spec"]["failurePolicy"] == "Fail"
        assert binding["spec"]["policyName"] == name
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": namespace
        }
        policies[name] = vap
    return policies, config


@pytest.fixture(scope="module")
def policies(chart):  # noqa: F811
    found, config = rendered(chart)
    # what built() uses is what the chart hands the service
    assert config["KubernetesWorkloads"] == {"namespace": "hf-workloads", "hdfs_volume": PVC}
    return found


@pytest.fixture(scope="module")
def policy(policies):
    return policies["hf-hubforge-workloads"]


def _matches(vap: dict, obj: dict, operation: str) -> bool:
    group, resource = RESOURCES[obj["kind"]]
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and operation in rule["operations"]
        for rule in vap["spec"]["matchConstraints"]["resourceRules"]
    )


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()  # builds CEL's parser: a tenth of a second, so once


@functools.cache
def program(expression: str):
    env = _environment()
    return env.program(env.compile(expression))


def admit(
    vap: dict,
    obj: dict,
    username: str = SERVICE,
    operation: str = "CREATE",
    old: dict | None = None,
    until: str | None = None,
) -> list[str] | None:
    """None when the policy does not apply; else the messages of failed validations.
    ``obj`` is the object sent (CREATE, UPDATE) or, for DELETE, the one deleted. With
    ``until``, evaluation stops at the first failed validation whose message has it (CEL
    in Python is slow: a tampered object needs the refusal it is about, not all of them;
    and an object asked about again gets the answer it got: a third of the calls)."""
    key = json.dumps([vap, obj, username, operation, old, until], sort_keys=True)
    if key not in _ANSWERS:
        _ANSWERS[key] = _admit(vap, obj, username, operation, old, until)
    answer = _ANSWERS[key]
    return None if answer is None else list(answer)


_ANSWERS: dict[str, list[str] | None] = {}


def _admit(
    vap: dict, obj: dict, username: str, operation: str, old: dict | None, until: str | None
) -> list[str] | None:
    if not _matches(vap, obj, operation):
        return None

    def run(expression: str, activation: dict):
        result = program(expression).evaluate(activation)
        if isinstance(result, celpy.CELEvalError):
            raise AssertionError(f"{expression}: {result}")
        return result

    if operation == "DELETE":
        new, old = None, obj
    else:
        new = obj
    activation = {
        "object": celpy.json_to_cel(new),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel(
            {
                "userInfo": {"username": username},
                "operation": operation,
                "kind": {"kind": obj["kind"]},
            }
        ),
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
    failed = []
    for v in vap["spec"]["validations"]:
        if not run(v["expression"], activation):
            failed.append(v["message"])
            if until is not None and until in v["message"]:
                break
    return failed


def verdict(policies: dict, obj: dict, operation: str = "CREATE", **kw) -> list[str]:
    """Every failed validation of every policy that applies; each object the service sends
    is matched by one policy at least."""
    applying = [admit(vap, obj, operation=operation, **kw) for vap in policies.values()]
    assert any(a is not None for a in applying), (obj["kind"], operation, "no policy applies")
    return [m for a in applying if a for m in a]


def built(
    owner: str = "alice",
    jobs: job_builders.ClusterSettings | None = None,
    serving: list[endpoint_builders.ServingSettings] | None = None,
) -> list[dict]:
    """Every object the builders make, with the chart's default images: jobs of 1, 2 and 4
    workers with and without GPUs (TFJob and Indexed Job + headless Service), endpoints
    with and without a GPU and batching, on TensorFlow Serving and on hubforge-model-server
    (Deployment + Service, and KServe), one with a name too long for ep-<owner>-<name>, and
    endpoints of several copies (REPLICAS: HPA, PDB)."""
    jobs = jobs or job_builders.ClusterSettings(
        namespace="hf-workloads", image="hubforge/singleuser:0.1.0", hdfs_volume=PVC
    )
    serving = serving or [
        endpoint_builders.ServingSettings(namespace="hf-workloads", hdfs_volume=PVC),
        # endpointServer: hubforge runs Hubforge's model server in the single-user images
        endpoint_builders.ServingSettings(
            namespace="hf-workloads",
            hdfs_volume=PVC,
            server="hubforge",
            image="hubforge/singleuser:0.1.0",
            gpu_image="hubforge/singleuser-cuda:0.1.0",
        ),
    ]
    objects = []
    for tfjob in (True, False):
        for workers, gpus in ((1, 0), (2, 1), (4, 1)):
            spec = JobSpec(name="m", workers=workers, gpus_per_worker=gpus, cpu=2)
            job_id = f"m-abc12{workers}"
            objects += job_builders.job_objects(owner, job_id, spec, "x", jobs, tfjob)
    for kserve in (True, False):
        for settings in serving:
            for name, gpus, batching in (
                ("scorer", 1, {"max_batch_size": 0}),
                ("cpu", 0, {"max_batch_size": 8, "batch_timeout_ms": 2}),
                ("a-" + "very-long-endpoint-name-" * 2 + "x", 0, {"max_batch_size": 0}),
            ):
                objects += endpoint_builders.endpoint_objects(
                    owner, name, [1, 2], {"stable": 1}, gpus, batching, settings, kserve
                )
        for replicas in REPLICAS:
            if kserve and replicas["target_concurrency"] is not None:
                continue  # KServe scales on CPU only (the backend refuses it)
            objects += endpoint_builders.endpoint_objects(
                owner, "many", [1], {}, 1, {"max_batch_size": 0}, serving[0], kserve, replicas
            )
    return objects


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if pod_specs(o)]


def test_what_hubforge_builds_is_admitted(policies):
    objects = built()
    assert {o["kind"] for o in objects} == set(RESOURCES)
    assert any(len(o["metadata"]["name"]) > 40 for o in objects)  # the hashed endpoint name
    for obj in objects:
        assert verdict(policies, obj) == [], (obj["kind"], obj["metadata"]["name"])
        # the endpoint backend PUTs its objects again on each deploy (UPDATE)
        assert verdict(policies, obj, "UPDATE", old=obj) == [], obj["kind"]
        # cancel and undeploy delete them
        assert verdict(policies, obj, "DELETE") == [], obj["kind"]


def test_owners_whose_name_is_no_dns_label_are_admitted(policies):
    # hub user names may hold '.' and '_' (hubforge.hub.passwords.USERNAME): hashed names
    for obj in built("bob.smith_2"):
        assert verdict(policies, obj) == [], (obj["kind"], obj["metadata"]["name"])


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-f", str(LINT_VALUES)],  # csi, another workload namespace, endpointServer hubforge
        ["--set", "hubforge.hdfs.mode=csi"],
        ["--set", "hubforge.service.namespace=hub"],  # inline nfs in the release's namespace
    ],
    ids=["nfs (claim)", "lint values", "csi", "nfs inline, one namespace"],
)
def test_what_the_service_builds_with_the_charts_settings_is_admitted(chart, args):  # noqa: F811
    """The settings the service reads from hubforge-config, through its own config classes."""
    found, config = rendered(chart, *args)
    jobs = KubernetesJobs(config=Config(config)).cluster_settings()
    serving = KubernetesEndpoints(config=Config(config)).settings()
    objects = built(jobs=jobs, serving=[serving])
    for obj in objects:
        assert verdict(found, obj) == [], (args, obj["kind"], obj["metadata"]["name"])
    # another HDFS source under the name hdfs: refused
    other = {"persistentVolumeClaim": {"claimName": "someone-elses"}}
    for obj in workloads(objects):
        refused = verdict(found, tampered(obj, lambda pod, o: replace_volume(pod, "hdfs", other)))
        assert any("only Hubforge's volumes" in m for m in refused), obj["kind"]


def test_host_path_mode_admits_no_workload(chart):  # noqa: F811
    """hostPath mode (one-node test clusters): the policy admits no hostPath, the HDFS one
    included (as before N12); docs/kubernetes.md says so."""
    found, config = rendered(chart, "--set", "hubforge.hdfs.mode=hostPath")
    assert "hostPath" in config["KubernetesWorkloads"]["hdfs_volume"]
    jobs = KubernetesJobs(config=Config(config)).cluster_settings()
    serving = KubernetesEndpoints(config=Config(config)).settings()
    for obj in workloads(built(jobs=jobs, serving=[serving])):
        assert any("never a hostPath" in m for m in verdict(found, obj)), obj["kind"]


def test_every_write_the_role_grants_is_under_a_policy(chart):  # noqa: F811
    """Whatever the Role lets the service create, update or delete, some policy checks."""
    for args in ([], ["--set", "hubforge.service.namespace=hub"]):
        docs = render(chart, *args)
        (role,) = [
            d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "hubforge-service"
        ]
        found = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
        covered = {
            (group, resource, operation)
            for vap in found
            for rule in vap["spec"]["matchConstraints"]["resourceRules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for operation in rule["operations"]
        }
        for rule in role["rules"]:
            for verb in set(rule["verbs"]) & set(VERBS):
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        assert (group, resource, VERBS[verb]) in covered, (resource, verb)
        assert set(role["rules"][0]["verbs"]) >= {"create", "delete"}  # the check has work


# -- tampered workloads --------------------------------------------------------------------
def tampered(obj: dict, change) -> dict:
    obj = copy.deepcopy(obj)
    for pod in pod_specs(obj):
        change(pod, obj)
    return obj


def replace_volume(pod: dict, name: str, source: dict) -> None:
    pod["volumes"] = [v for v in pod.get("volumes", []) if v["name"] != name]
    pod["volumes"].append({"name": name, **source})


def mount(pod: dict, name: str, path: str = "/mnt/x", **fields) -> None:
    pod["containers"][0].setdefault("volumeMounts", []).append(
        {"name": name, "mountPath": path, **fields}
    )


def other_owners_area(pod, obj):
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] == "hdfs" and m.get("subPath", "").startswith("users/"):
                m["subPath"] = "users/bob"
                m["mountPath"] = "/mnt/hdfs/users/bob"


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


def whole_hdfs_as_config(pod, obj):
    """N12: the HDFS claim in a volume named 'config', mounted without a subPath."""
    replace_volume(pod, "config", PVC)
    mount(pod, "config", "/mnt/all")


def miner(pod, obj, image="evil/miner:latest", field="initContainers"):
    """N12: an init container (or an ephemeral one) mounting HDFS without a subPath."""
    pod.setdefault(field, []).append(
        {
            "name": "miner",
            "image": image,
            "volumeMounts": [{"name": "hdfs", "mountPath": "/data"}],
            "securityContext": container_security(read_only_root=True),
        }
    )


def token_as_tmp(pod, obj):
    """N12: a projected service-account token in a volume named 'tmp'."""
    replace_volume(
        pod,
        "tmp",
        {"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
    )
    mount(pod, "tmp", "/var/run/secrets/kubernetes.io/serviceaccount")


def secret_as_script(pod, obj):
    """N12: any Secret of the namespace (z2jh's `hub` with service.namespace = the release's)
    in a volume named 'script'."""
    replace_volume(pod, "script", {"secret": {"secretName": "hub"}})
    mount(pod, "script", "/opt/x")


def first_owner_label(obj, owner: str) -> None:
    for labels in [obj["metadata"]["labels"]] + [
        t["metadata"]["labels"]
        for t in (
            [r["template"] for r in obj["spec"]["tfReplicaSpecs"].values()]
            if obj["kind"] == "TFJob"
            else [obj["spec"]["template"]]
            if "template" in obj.get("spec", {})
            else []
        )
    ]:
        labels["hubforge.io/owner"] = owner
    if obj["kind"] == "Deployment":
        obj["spec"]["selector"]["matchLabels"]["hubforge.io/owner"] = owner


def relabelled_for_alice(pod, obj):
    """N12: bob's job or endpoint, labelled alice everywhere and mounting alice's area (what
    a compromised service would send to reach her data through a job recorded as bob's)."""
    first_owner_label(obj, "alice")
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] == "hdfs" and m["subPath"].startswith("users/bob"):
                m["subPath"] = m["subPath"].replace("users/bob", "users/alice")
                m["mountPath"] = "/mnt/hdfs/" + m["subPath"]


def set_env(pod, name, **fields):
    pod["containers"][0].setdefault("env", []).append({"name": name, **fields})


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
    # N12's table
    "N12 whole HDFS through a volume named config": (
        whole_hdfs_as_config,
        "only Hubforge's volumes",
    ),
    "N12 init container evil/miner mounting hdfs without subPath": (
        miner,
        "only Hubforge's images",
    ),
    "N12 init container of ours mounting hdfs without subPath": (
        lambda pod, obj: miner(pod, obj, image="hubforge/singleuser:0.1.0"),
        "owner's area",
    ),
    "N12 ephemeral container mounting hdfs without subPath": (
        lambda pod, obj: miner(pod, obj, "hubforge/singleuser:0.1.0", "ephemeralContainers"),
        "owner's area",
    ),
    "N12 projected service-account token in a volume named tmp": (
        token_as_tmp,
        "only Hubforge's volumes",
    ),
    "N12 secret volume named script": (secret_as_script, "only Hubforge's volumes"),
    # beyond the table: the same reach by other fields
    "another object's ConfigMap as script/config": (
        lambda pod, obj: replace_volume(pod, "config", {"configMap": {"name": "hubforge-config"}}),
        "only Hubforge's volumes",
    ),
    "HDFS as a raw block device": (
        lambda pod, obj: pod["containers"][0].update(
            volumeDevices=[{"name": "hdfs", "devicePath": "/dev/hdfs"}]
        ),
        "owner's area",
    ),
    "HDFS under another mount path": (
        lambda pod, obj: pod["containers"][0]["volumeMounts"][0].update(mountPath="/mnt/x"),
        "owner's area",
    ),
    "a Secret in the environment": (
        lambda pod, obj: set_env(
            pod, "T", valueFrom={"secretKeyRef": {"name": "hub", "key": "hub.config.x"}}
        ),
        "no Secret",
    ),
    "a Secret as envFrom": (
        lambda pod, obj: pod["containers"][0].update(envFrom=[{"secretRef": {"name": "hub"}}]),
        "no Secret",
    ),
    "a privileged init container": (
        lambda pod, obj: (
            miner(pod, obj, image="hubforge/singleuser:0.1.0"),
            pod["initContainers"][0]["securityContext"].update(privileged=True),
            pod["initContainers"][0]["volumeMounts"].clear(),
        ),
        "no privilege",
    ),
    "privilege escalation": (
        lambda pod, obj: pod["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "no privilege",
    ),
    "an added capability": (
        lambda pod, obj: pod["containers"][0]["securityContext"]["capabilities"].update(
            add=["SYS_ADMIN"]
        ),
        "no privilege",
    ),
    "root": (lambda pod, obj: pod["securityContext"].update(runAsUser=0), "no privilege"),
    "the host's network": (lambda pod, obj: pod.update(hostNetwork=True), "no privilege"),
    "pods labelled for another job": (
        lambda pod, obj: [
            t["metadata"]["labels"].update({"hubforge.io/job": "someone-elses"})
            for t in (
                [r["template"] for r in obj["spec"]["tfReplicaSpecs"].values()]
                if obj["kind"] == "TFJob"
                else [obj["spec"]["template"]]
                if "template" in obj["spec"]
                else [{"metadata": {"labels": obj["metadata"]["labels"]}}]
            )
        ],
        "the owner is bound",
    ),
    "renamed": (
        lambda pod, obj: obj["metadata"].update(name=obj["metadata"]["name"] + "x"),
        "the owner is bound",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_workloads_are_refused(policy, case):
    change, message = CASES[case]
    for obj in workloads(built()):
        if case == "datasets writable" and obj["kind"] in ("Deployment", "InferenceService"):
            continue  # endpoints mount no datasets
        refused = admit(policy, tampered(obj, change), until=message)
        assert refused and any(message in m for m in refused), (obj["kind"], refused)


def test_the_owner_label_is_bound_to_the_job(policy):
    """N12: 'owner label alice + users/alice mount' on bob's job or endpoint. The name (an
    endpoint's ep-bob-...) or the job's directory (users/bob/jobs/<job>) still says bob."""
    for obj in workloads(built("bob")):
        assert admit(policy, obj) == []
        refused = admit(policy, tampered(obj, relabelled_for_alice))
        assert any("the owner is bound" in m for m in refused), (obj["kind"], refused)
        # only the object's label: its pods and mounts still say bob
        relabelled = copy.deepcopy(obj)
        relabelled["metadata"]["labels"]["hubforge.io/owner"] = "alice"
        refused = admit(policy, relabelled)
        assert any("the owner is bound" in m for m in refused), (obj["kind"], refused)


def test_an_update_keeps_the_owner(policies):
    for obj in built("bob"):
        changed = copy.deepcopy(obj)
        first_owner_label(changed, "alice")
        refused = verdict(policies, changed, "UPDATE", old=obj)
        assert any("update keeps them" in m for m in refused), (obj["kind"], refused)


def test_kserve_runs_only_its_own_containers(policy):
    (isvc, *_) = [o for o in built() if o["kind"] == "InferenceService"]
    changes = {
        "a KServe model from the whole HDFS claim": lambda o: o["spec"]["predictor"].update(
            model={"modelFormat": {"name": "tensorflow"}, "storageUri": "pvc://hubforge-hdfs/"}
        ),
        "a transformer": lambda o: o["spec"].update(
            transformer={"containers": [{"name": "t", "image": "evil/miner:latest"}]}
        ),
        "a request logger": lambda o: o["spec"]["predictor"].update(
            logger={"mode": "all", "url": "http://collector.example"}
        ),
    }
    for what, change in changes.items():
        obj = copy.deepcopy(isvc)
        change(obj)
        refused = admit(policy, obj)
        assert any("its predictor's own containers" in m for m in refused), what


def test_other_accounts_are_not_this_policys_business(policies):
    obj = tampered(
        workloads(built())[0], lambda pod, obj: pod.update(automountServiceAccountToken=True)
    )
    for vap in policies.values():
        assert admit(vap, obj, username="system:serviceaccount:kube-system:job-controller") is None


# -- Services, NetworkPolicies, ConfigMaps -------------------------------------------------
def of_kind(kind: str, objects: list[dict] | None = None) -> list[dict]:
    found = [o for o in (objects or built()) if o["kind"] == kind]
    assert found
    return found


def changed(obj: dict, change) -> dict:
    obj = copy.deepcopy(obj)
    change(obj.get("spec", obj), obj)
    return obj


SERVICE_CASES = {
    "N12 a NodePort Service": lambda spec, obj: spec.update(type="NodePort"),
    "N12 a Service with externalIPs": lambda spec, obj: spec.update(externalIPs=["203.0.113.7"]),
    "a LoadBalancer Service": lambda spec, obj: spec.update(type="LoadBalancer"),
    "an ExternalName Service": lambda spec, obj: spec.update(
        type="ExternalName", externalName="hub.hub.svc.cluster.local"
    ),
    "a Service selecting every job's pods": lambda spec, obj: spec.update(
        selector={"app.kubernetes.io/name": "hubforge-job"}
    ),
    "a Service selecting another job": lambda spec, obj: spec.update(
        selector={"hubforge.io/job": "someone-elses"}
    ),
    "a Service without a selector": lambda spec, obj: spec.pop("selector"),
}


@pytest.mark.parametrize("case", sorted(SERVICE_CASES))
def test_tampered_services_are_refused(policies, case):
    for obj in of_kind("Service"):  # the headless job Service and the endpoint Service
        refused = verdict(policies, changed(obj, SERVICE_CASES[case]))
        assert any("ClusterIP only" in m for m in refused), (obj["metadata"]["name"], refused)


ALL_PODS = {"podSelector": {}}
NETWORK_POLICY_CASES = {
    "N12 an allow-all NetworkPolicy (an empty rule)": lambda spec, obj: spec.update(
        ingress=[{}], egress=[{}]
    ),
    "ingress from an empty peer list": lambda spec, obj: spec["ingress"][0].update({"from": []}),
    "ingress from every pod of the namespace": lambda spec, obj: spec["ingress"][0].update(
        {"from": [ALL_PODS]}
    ),
    "ingress from every namespace": lambda spec, obj: spec["ingress"][0]["from"].append(
        {"namespaceSelector": {}}
    ),
    "egress to an ipBlock": lambda spec, obj: spec["egress"][0]["to"].append(
        {"ipBlock": {"cidr": "0.0.0.0/0"}}
    ),
    "egress to every job's pods": lambda spec, obj: spec["egress"].append(
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "hubforge-job"}}}]}
    ),
    "selecting every pod": lambda spec, obj: spec.update(podSelector={}),
    "selecting another job's pods": lambda spec, obj: spec.update(
        podSelector={"matchLabels": {"hubforge.io/job": "someone-elses"}}
    ),
    "a peer by matchExpressions": lambda spec, obj: spec["ingress"][0]["from"][0][
        "podSelector"
    ].update(matchExpressions=[{"key": "hubforge.io/job", "operator": "Exists"}]),
}


@pytest.mark.parametrize("case", sorted(NETWORK_POLICY_CASES))
def test_tampered_network_policies_are_refused(policies, case):
    for obj in of_kind("NetworkPolicy"):
        refused = verdict(policies, changed(obj, NETWORK_POLICY_CASES[case]))
        assert any("NetworkPolicy selects one job" in m for m in refused), refused


def test_objects_of_others_are_neither_made_nor_changed_nor_deleted(policies):
    """With service.namespace = the release's namespace the Role's rights reach z2jh's
    objects (the hub's ConfigMap runs its extraConfig; its Services route every request)
    and the chart's own policies: the service may touch only what it made."""
    chart_labels = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "hubforge"}
    theirs = [
        {"kind": "ConfigMap", "metadata": {"name": "hub", "labels": {"component": "hub"}}},
        {"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}},
        {
            "kind": "Service",
            "metadata": {"name": "proxy-public", "labels": {"component": "proxy-public"}},
            "spec": {"type": "LoadBalancer", "selector": {"component": "proxy"}},
        },
        {
            "kind": "NetworkPolicy",
            "metadata": {"name": "hubforge-jobs-default", "labels": chart_labels},
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "hubforge-job"}}},
        },
        {"kind": "Deployment", "metadata": {"name": "hub", "labels": {"component": "hub"}}},
    ]
    for obj in theirs:
        assert verdict(policies, obj, "DELETE"), obj["metadata"]["name"]
        if obj["kind"] in ("ConfigMap", "Service"):
            # the same names with Hubforge's labels: still not a job's or an endpoint's
            forged = copy.deepcopy(obj)
            forged["metadata"]["labels"] = job_builders.labels("alice", "m-abc123")
            forged.setdefault("spec", {})["selector"] = {"hubforge.io/job": "m-abc123"}
            forged["spec"].pop("type", None)
            assert verdict(policies, forged, "UPDATE", old=obj), obj["metadata"]["name"]
            assert verdict(policies, forged), obj["metadata"]["name"]
    # a ConfigMap that names another job's (its name hf-<job> but another job label)
    (config_map, *_) = of_kind("ConfigMap")
    other = copy.deepcopy(config_map)
    other["metadata"]["labels"]["hubforge.io/job"] = "someone-elses"
    assert any("own objects" in m for m in verdict(policies, other))


# -- endpoints of several copies: HPAs, PDBs, replicas ----------------------------------------
def test_replicas_make_what_the_policies_admit(policies):
    objects = built()
    hpas, pdbs = (
        of_kind("HorizontalPodAutoscaler", objects),
        of_kind("PodDisruptionBudget", objects),
    )
    # fixed 3 and 2..5 make PDBs in both modes; HPAs only with a Deployment (KServe: its own)
    assert len(pdbs) == 4 and len(hpas) == 2
    metrics = sorted(h["spec"]["metrics"][0]["type"] for h in hpas)
    assert metrics == ["Pods", "Resource"]
    for obj in hpas + pdbs:
        assert obj["metadata"]["name"] == "ep-alice-many"
        assert verdict(policies, obj) == []
        assert verdict(policies, obj, "UPDATE", old=obj) == []
        assert verdict(policies, obj, "DELETE") == []
    # another application's PDB (z2jh's, in one namespace) is not the service's to delete
    theirs = {"kind": "PodDisruptionBudget", "metadata": {"name": "user-scheduler"}}
    assert verdict(policies, theirs, "DELETE")


def other_target(spec, obj):
    spec["scaleTargetRef"]["name"] = "hubforge-service"


HPA_CASES = {
    "scaling another Deployment": other_target,
    "scaling another endpoint's Deployment": lambda spec, obj: spec["scaleTargetRef"].update(
        name="ep-bob-scorer"
    ),
    "scaling a StatefulSet": lambda spec, obj: spec["scaleTargetRef"].update(kind="StatefulSet"),
    "scaling through another API group": lambda spec, obj: spec["scaleTargetRef"].update(
        apiVersion="example.org/v1"
    ),
    "more copies than the chart allows": lambda spec, obj: spec.update(maxReplicas=99),
    "an External metric": lambda spec, obj: spec["metrics"].append(
        {
            "type": "External",
            "external": {
                "metric": {"name": "queue_depth"},
                "target": {"type": "Value", "value": "1"},
            },
        }
    ),
    "an Object metric": lambda spec, obj: spec["metrics"].append(
        {
            "type": "Object",
            "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "hub"},
                "metric": {"name": "requests"},
                "target": {"type": "Value", "value": "1"},
            },
        }
    ),
}


@pytest.mark.parametrize("case", sorted(HPA_CASES))
def test_tampered_autoscalers_are_refused(policies, case):
    for obj in of_kind("HorizontalPodAutoscaler"):
        bad = changed(obj, HPA_CASES[case])
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)  # only the policy stops it
        refused = verdict(policies, bad)
        assert any("HorizontalPodAutoscaler scales its own" in m for m in refused), refused
        assert any(
            "HorizontalPodAutoscaler scales its own" in m
            for m in verdict(policies, bad, "UPDATE", old=obj)
        )


PDB_CASES = {
    "selecting another owner's pods": lambda spec, obj: spec["selector"]["matchLabels"].update(
        {"hubforge.io/owner": "bob"}
    ),
    "selecting every endpoint's pods": lambda spec, obj: spec.update(
        selector={"matchLabels": {"app.kubernetes.io/name": "hubforge-endpoint"}}
    ),
    "selecting the hub": lambda spec, obj: spec.update(
        selector={"matchLabels": {"component": "hub"}}
    ),
    "matchExpressions": lambda spec, obj: spec["selector"].update(
        matchExpressions=[{"key": "hubforge.io/owner", "operator": "Exists"}]
    ),
    "blocking drains with minAvailable": lambda spec, obj: (
        spec.pop("maxUnavailable"),
        spec.update(minAvailable="100%"),
    ),
    "blocking drains with maxUnavailable 0": lambda spec, obj: spec.update(maxUnavailable=0),
    "blocking drains with maxUnavailable 0%": lambda spec, obj: spec.update(maxUnavailable="0%"),
}


@pytest.mark.parametrize("case", sorted(PDB_CASES))
def test_tampered_disruption_budgets_are_refused(policies, case):
    for obj in of_kind("PodDisruptionBudget"):
        bad = changed(obj, PDB_CASES[case])
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
        refused = verdict(policies, bad)
        assert any("PodDisruptionBudget selects exactly" in m for m in refused), refused


def test_endpoints_copies_are_limited(policy):
    """At most hubforge.serving.maxReplicas copies of a Deployment or an InferenceService,
    whatever the HPA says (it scales through deployments/scale, as its own controller)."""
    many = [o for o in built() if o["metadata"]["name"] == "ep-alice-many"]
    for obj in workloads(many):
        assert admit(policy, obj) == []
        bad = copy.deepcopy(obj)
        if obj["kind"] == "Deployment":
            bad["spec"]["replicas"] = 9
        else:
            bad["spec"]["predictor"]["maxReplicas"] = 9
        refused = admit(policy, bad)
        assert refused == ["at most 8 copies of an endpoint (hubforge.serving.maxReplicas)"], (
            obj["kind"],
            refused,
        )


def test_the_limit_follows_the_value(chart):  # noqa: F811
    found, config = rendered(chart, "--set", "hubforge.serving.maxReplicas=3")
    assert config["KubernetesEndpoints"]["max_replicas"] == 3
    serving = KubernetesEndpoints(config=Config(config)).settings()
    assert serving.max_replicas == 3
    fixed = check_replicas(3, serving.max_replicas)
    objects = endpoint_builders.endpoint_objects(
        "alice", "scorer", [1], {}, 0, {"max_batch_size": 0}, serving, False, fixed
    )
    for obj in objects:
        assert verdict(found, obj) == [], obj["kind"]
    scaled = endpoint_builders.horizontal_pod_autoscaler(
        "alice", "scorer", check_replicas({"min": 1, "max": 4}, 8), serving
    )
    assert any("at most 3 copies" in m for m in verdict(found, scaled))
