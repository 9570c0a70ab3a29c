"""What the chart lets the hubforge service do, and how its own pods run: RBAC enumerated,
pods checked against Pod Security `restricted`."""

from __future__ import annotations

import pytest

from tests.chart.test_chart import chart, render  # noqa: F401 (fixture)
from tests.pod_security import pod_specs, restricted_violations

FORBIDDEN_RESOURCES = {
    "secrets",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "serviceaccounts/token",
    "nodes",
    "persistentvolumes",
}
ESCALATING_VERBS = {"escalate", "bind", "impersonate", "*"}


def service_rules(docs: list[dict]) -> list[tuple[str, str, dict]]:
    """(binding kind, namespace or '*', rule) for every rule bound to the service's account."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    found = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(s.get("name") == "hubforge-service" for s in subjects):
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            found.append((binding["kind"], namespace or "*", rule))
    return found


@pytest.mark.parametrize(
    "args",
    [[], ["--set", "hubforge.service.namespace=hub"]],
    ids=["own workload namespace (default)", "the release's namespace"],
)
def test_the_service_account_can_touch_no_secret_and_grant_nothing(chart, args):  # noqa: F811
    docs = render(chart, *args)
    rules = service_rules(docs)
    assert rules, "no role bound to hubforge-service"
    workloads = args[-1].split("=")[1] if args else "hf-workloads"
    for kind, namespace, rule in rules:
        resources = set(rule.get("resources") or [])
        verbs = set(rule.get("verbs") or [])
        assert not resources & FORBIDDEN_RESOURCES, (namespace, rule)
        assert "*" not in resources and not verbs & ESCALATING_VERBS, (namespace, rule)
        if kind == "ClusterRoleBinding":  # cluster-wide: only reading the two CRDs
            assert rule["resources"] == ["customresourcedefinitions"] and verbs == {"get"}
            assert set(rule["resourceNames"]) == {
                "tfjobs.kubeflow.org",
                "inferenceservices.serving.kserve.io",
            }
        else:
            assert namespace == workloads, (namespace, rule)
    # pods: read only (they are made through Jobs, TFJobs and Deployments it owns)
    pod_verbs = {v for _, _, r in rules if "pods" in (r.get("resources") or []) for v in r["verbs"]}
    assert pod_verbs <= {"get", "list", "watch"}


@pytest.mark.parametrize("mode", ["csi"])
def test_hubforge_pods_of_the_chart_are_restricted(chart, mode):  # noqa: F811
    """The service and Label Studio pods (and any pod template of ours) pass `restricted`
    when HDFS comes as a volume claim."""
    docs = render(chart, "--set", f"hubforge.hdfs.mode={mode}")
    ours = [
        d
        for d in docs
        if (d.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/part-of")
        == "hubforge"
        or d["metadata"]["name"].startswith(("hubforge", "hf-"))
    ]
    pods = [(d["kind"], d["metadata"]["name"], p) for d in ours for p in pod_specs(d)]
    assert pods
    for kind, name, pod in pods:
        assert restricted_violations(pod) == [], (kind, name)


@pytest.mark.parametrize("mode", ["nfs", "csi", "hostPath"])
def test_workloads_run_in_a_restricted_namespace_of_their_own(chart, mode):  # noqa: F811
    """By default jobs and endpoints go to <release>-workloads, which Pod Security enforces
    `restricted` on; every pod the service builds with the chart's settings passes it (NFS
    through a PersistentVolume and claim there: restricted admits no inline nfs volume).
    hostPath mode (one-node test clusters) cannot be restricted: it says so in the labels."""
    import json

    from hubforge.jobs import objects as job_objects
    from hubforge.jobs.spec import JobSpec
    from hubforge.serving import objects as endpoint_objects

    docs = render(chart, "--set", f"hubforge.hdfs.mode={mode}")
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert namespace["metadata"]["name"] == "hf-workloads"
    expected = "privileged" if mode == "hostPath" else "restricted"
    assert labels["pod-security.kubernetes.io/enforce"] == expected
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    config = json.loads(objs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"])
    workloads = config["KubernetesWorkloads"]
    assert workloads["namespace"] == "hf-workloads"
    if mode == "nfs":
        claim = objs[("PersistentVolumeClaim", "hubforge-hdfs")]
        volume = objs[("PersistentVolume", "hf-workloads-hdfs")]
        assert claim["metadata"]["namespace"] == "hf-workloads"
        assert volume["spec"]["claimRef"] == {"namespace": "hf-workloads", "name": "hubforge-hdfs"}
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert volume["spec"]["nfs"]["server"] == "hdfs-nfs-gateway.hdfs.svc.cluster.local"
        assert workloads["hdfs_volume"] == {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}}
    else:
        assert ("PersistentVolume", "hf-workloads-hdfs") not in objs
    jobs = job_objects.ClusterSettings(
        namespace="hf-workloads", hdfs_volume=workloads["hdfs_volume"]
    )
    serving = endpoint_objects.ServingSettings(
        namespace="hf-workloads", hdfs_volume=workloads["hdfs_volume"]
    )
    built = []
    for tfjob in (True, False):
        spec = JobSpec(name="m", workers=2, gpus_per_worker=1)
        built += job_objects.job_objects("alice", "m-abc123", spec, "x", jobs, tfjob)
    for kserve in (True, False):
        built += endpoint_objects.endpoint_objects(
            "alice", "scorer", [1], {}, 1, {"max_batch_size": 0}, serving, kserve
        )
    pods = [p for o in built for p in pod_specs(o)]
    assert len(pods) >= 4
    for pod in pods:
        assert all(o["metadata"]["namespace"] == "hf-workloads" for o in built)
        violations = restricted_violations(pod)
        if mode == "hostPath":
            assert any("hostPath" in v for v in violations), violations
        else:
            assert violations == [], violations


def test_the_service_pod_holds_a_short_lived_token_only(chart):  # noqa: F811
    """No long-lived ServiceAccount token mount: a projected one-hour token for the API
    server, at the path its client reads, in the service's container only."""
    docs = render(chart)
    (service,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "hubforge-service"
    ]
    pod = service["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    (token,) = [
        s["serviceAccountToken"]
        for s in volume["projected"]["sources"]
        if "serviceAccountToken" in s
    ]
    assert token["expirationSeconds"] <= 3600 and "audience" not in token  # the API server's
    mounts = [
        (c["name"], m)
        for c in pod["containers"] + pod.get("initContainers", [])
        for m in c.get("volumeMounts", [])
        if m["name"] == volume["name"]
    ]
    assert mounts == [
        (
            "service",
            {
                "name": volume["name"],
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        )
    ]
    others = [
        d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["name"] != "hubforge-service"
        and d["metadata"]["name"].startswith("hubforge")
    ]
    assert others and all(p.get("automountServiceAccountToken") is False for p in others)


@pytest.mark.parametrize(
    ("host", "database"),
    [
        ("", None),  # SQLite on its volume: no database to reach
        ("10.3.0.5", {"labels": {}, "ip": "10.3.0.5", "namespace": "-"}),
        ("postgres.db.svc", {"labels": {"app": "postgres"}, "ip": "10.4.9.9", "namespace": "db"}),
        ("db.example.org", {"labels": {}, "ip": "198.51.100.7", "namespace": "-"}),
    ],
    ids=["sqlite", "postgres by address", "postgres in the cluster", "postgres by name"],
)
def test_label_studio_reaches_only_its_database(chart, host, database):  # noqa: F811
    """N12: only ingress policies selected Label Studio; docs/kubernetes.md says it 'may reach
    nothing but its database'. Now an egress policy says so too: its ML backends, webhooks
    and cloud storages (requests it makes on a user's behalf) reach nothing."""
    from tests.chart.test_chart import _allowed

    args = []
    if host:
        args = ["--set", f"hubforge.labelStudio.postgres.host={host}"]
        args += ["--set", "hubforge.labelStudio.postgres.passwordSecret=ls-db"]
    docs = render(chart, *args)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (ls,) = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "hubforge-label-studio"
    ]
    pod = {"labels": ls["spec"]["template"]["metadata"]["labels"], "ip": "10.4.0.11"}
    others = {
        "the API server": ({"labels": {}, "ip": "10.96.0.1", "namespace": "default"}, 443),
        "cloud metadata": ({"labels": {}, "ip": "169.254.169.254", "namespace": "-"}, 80),
        "the internet": ({"labels": {}, "ip": "151.101.0.223", "namespace": "-"}, 443),
        "the hub": ({"labels": {"component": "hub"}, "ip": "10.4.0.14"}, 8081),
        "the hubforge service": (
            {"labels": {"app.kubernetes.io/name": "hubforge-service"}, "ip": "10.4.0.10"},
            8000,
        ),
        "a notebook": (
            {"labels": {"component": "singleuser-server"}, "ip": "10.4.0.15"},
            8888,
        ),
        "a job's TensorFlow port": (
            {"labels": {"hubforge.io/job": "m-1"}, "ip": "10.4.1.1", "namespace": "hf-workloads"},
            2222,
        ),
        "another pod of the database's namespace": (
            {"labels": {}, "ip": "10.4.9.8", "namespace": "db"},
            6379,
        ),
    }
    for what, (peer, port) in others.items():
        assert _allowed(policies, "Egress", pod, peer, port) is False, what
    dns = {"labels": {}, "ip": "10.96.0.10", "namespace": "kube-system"}
    if database is None:
        assert _allowed(policies, "Egress", pod, dns, 53, "UDP") is False
    else:
        assert _allowed(policies, "Egress", pod, database, 5432) is True
        assert _allowed(policies, "Egress", pod, database, 22) is False
        assert _allowed(policies, "Egress", pod, dns, 53, "UDP") is True
    # and it is still reached by the proxy, the service and notebooks (its ingress policy)
    proxy = {"labels": {"component": "proxy"}, "ip": "10.4.0.13"}
    assert _allowed(policies, "Ingress", pod, proxy, 8080, named={"http": 8080}) is True
