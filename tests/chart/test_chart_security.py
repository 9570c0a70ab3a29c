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
    [[], ["--set", "hubforge.service.namespace=hub-workloads"]],
    ids=["release namespace", "own workload namespace"],
)
def test_the_service_account_can_touch_no_secret_and_grant_nothing(chart, args):  # noqa: F811
    docs = render(chart, *args)
    rules = service_rules(docs)
    assert rules, "no role bound to hubforge-service"
    workloads = args[-1].split("=")[1] if args else "hub"
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
