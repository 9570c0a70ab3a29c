"""The Helm chart rendered by a real helm, validated against the Kubernetes schemas.

zero-to-jupyterhub cannot be fetched here: a temporary copy of the chart gets a placeholder
`jupyterhub` subchart, so helm renders our own templates; the real dependency stays declared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".venvs" / "tools" / "helm"
CHART = ROOT / "helm" / "hubforge"
LINT_VALUES = Path(__file__).with_name("lint-values.yaml")
K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    assert HELM.exists(), "helm is missing: run `make setup-test` (helm/fetch_helm.py)"
    copy = tmp_path_factory.mktemp("chart") / "hubforge"
    shutil.copytree(CHART, copy)
    deps = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    (z2jh,) = [d for d in deps if d["name"] == "jupyterhub"]
    placeholder = copy / "charts" / "jupyterhub"
    placeholder.mkdir(parents=True)
    (placeholder / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "jupyterhub", "version": z2jh["version"]})
    )
    return copy


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def render(chart: Path, *args: str) -> list[dict]:
    run = helm("template", "hf", str(chart), "--namespace", "hub", *args)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def by_kind(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_schema_json_is_generated_from_the_yaml():
    run = subprocess.run(
        [sys.executable, str(ROOT / "helm" / "generate_schema.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("values", [[], ["-f", str(LINT_VALUES)]], ids=["defaults", "lint"])
def test_lint_and_every_object_is_valid(chart, values):
    run = helm("lint", "--strict", str(chart), *values)
    assert run.returncode == 0, run.stdout + run.stderr
    docs = render(chart, *values)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_defaults(chart):
    objs = by_kind(render(chart))
    role = objs[("Role", "hubforge-service")]
    assert role["metadata"]["namespace"] == "hub"
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {
        "configmaps",
        "services",
        "pods",
        "pods/log",
        "jobs",
        "deployments",
        "tfjobs",
        "inferenceservices",
    }
    assert not any("secrets" in rule["resources"] for rule in role["rules"])
    crds = objs[("ClusterRole", "hf-hubforge-crds")]["rules"]
    assert crds == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["tfjobs.kubeflow.org", "inferenceservices.serving.kserve.io"],
            "verbs": ["get"],
        }
    ]
    hadoop = objs[("ConfigMap", "hubforge-hadoop-conf")]["data"]
    assert "fs.defaultFS" in hadoop["core-site.xml"] and "hdfs-site.xml" in hadoop
    ls = objs[("Deployment", "hubforge-label-studio")]["spec"]["template"]["spec"]
    assert ls["automountServiceAccountToken"] is False
    assert ls["securityContext"]["runAsNonRoot"] is True
    assert {
        "name": "hdfs",
        "nfs": {"server": "hdfs-nfs-gateway.hdfs.svc.cluster.local", "path": "/"},
    } in ls["volumes"]
    assert ("PersistentVolumeClaim", "hubforge-label-studio") in objs
    endpoints = objs[("NetworkPolicy", "hubforge-endpoints-ingress")]["spec"]
    assert endpoints["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "hubforge-endpoint"
    }
    (rule,) = endpoints["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"component": "hub"}
    assert rule["ports"] == [{"port": 8501, "protocol": "TCP"}]


def test_every_option(chart):
    objs = by_kind(render(chart, "-f", str(LINT_VALUES)))
    assert objs[("Role", "hubforge-service")]["metadata"]["namespace"] == "team-workloads"
    assert objs[("NetworkPolicy", "hubforge-endpoints-ingress")]["metadata"]["namespace"] == (
        "team-workloads"
    )
    ls = objs[("Deployment", "hubforge-label-studio")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in ls["containers"][0]["env"]}
    assert env["POSTGRE_HOST"]["value"] == "postgres.db.svc"
    assert env["POSTGRE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "ls-db",
        "key": "password",
    }
    assert ("PersistentVolumeClaim", "hubforge-label-studio") not in objs  # Postgres holds it
    assert {"name": "hdfs", "persistentVolumeClaim": {"claimName": "hdfs-csi"}} in ls["volumes"]
    egress = objs[("NetworkPolicy", "hubforge-singleuser-egress")]["spec"]["egress"]
    assert [b["ipBlock"]["cidr"] for b in egress[1]["to"]] == ["10.1.0.0/16", "10.2.0.0/16"]


def test_host_path_mode_and_no_policies(chart):
    objs = by_kind(
        render(
            chart,
            "--set",
            "hubforge.hdfs.mode=hostPath",
            "--set",
            "hubforge.networkPolicies.enabled=false",
            "--set",
            "hubforge.labelStudio.enabled=false",
        )
    )
    assert not any(kind == "NetworkPolicy" for kind, _ in objs)
    assert ("Deployment", "hubforge-label-studio") not in objs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "hubforge.hdfs.mdoe=nfs"], "mdoe"),
        (["--set", "hubforge.hdfs.mode=s3"], "mode"),
        (["--set", "hubforge.labelStudio.storage=10"], "storage"),
        (["--set", "hubforge.labelStudio.postgres.host=db"], "passwordSecret is needed"),
    ],
)
def test_mistakes_fail_in_helm(chart, args, message):
    run = helm("template", "hf", str(chart), *args)
    assert run.returncode != 0
    assert message in run.stderr
