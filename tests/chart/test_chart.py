"""The Helm chart rendered by a real helm, validated against the Kubernetes schemas.

zero-to-jupyterhub cannot be fetched here: a temporary copy of the chart gets a placeholder
`jupyterhub` subchart, so helm renders our own templates; the real dependency stays declared.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".venvs" / "tools" / "helm"
CHART = ROOT / "helm" / "hubforge"
LINT_VALUES = Path(__file__).with_name("lint-values.yaml")
K8S_VERSION = "1.30.0"
Z2JH_FIXTURES = ROOT.parent / "shared" / "fixtures" / "charts"


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    assert HELM.exists(), "helm is missing: run `make setup-test` (helm/fetch_helm.py)"
    copy = tmp_path_factory.mktemp("chart") / "hubforge"
    shutil.copytree(CHART, copy)
    deps = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    (z2jh,) = [d for d in deps if d["name"] == "jupyterhub"]
    # the released z2jh chart, not a placeholder: its templates, policies and schema take part
    released = Z2JH_FIXTURES / f"jupyterhub-{z2jh['version']}.tgz"
    assert released.is_file(), f"{released} is missing (../shared/fixtures)"
    (copy / "charts").mkdir(exist_ok=True)
    shutil.copy(released, copy / "charts" / released.name)
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
    assert role["metadata"]["namespace"] == "hf-workloads"
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
        "networkpolicies",  # one per job (its workers reach each other)
        "leases",  # the replica holding it starts scheduled runs
        "horizontalpodautoscalers",  # an endpoint scaling between min and max copies
        "poddisruptionbudgets",  # an endpoint of two copies or more
    }
    scaling = [
        (r["apiGroups"], r["verbs"])
        for r in role["rules"]
        if {"horizontalpodautoscalers", "poddisruptionbudgets"} & set(r["resources"])
    ]
    writes = ["get", "list", "create", "update", "delete"]
    assert sorted(scaling) == [(["autoscaling"], writes), (["policy"], writes)]
    config = json.loads(objs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"])
    endpoints = config["KubernetesEndpoints"]
    assert endpoints["max_replicas"] == 8  # hubforge.serving.maxReplicas, the policy's too
    assert endpoints["concurrency_metric"] == "hubforge_endpoint_requests_in_flight"
    leases = [r for r in role["rules"] if r["resources"] == ["leases"]]
    assert sorted((r["verbs"], r.get("resourceNames")) for r in leases) == [
        (["create"], None),  # (create cannot be limited by name)
        (["get", "update"], ["hubforge-schedules"]),
    ]
    assert not any("secrets" in rule["resources"] for rule in role["rules"])
    # nothing that would let it escalate: no exec, no RBAC, no secrets anywhere
    forbidden = {"secrets", "pods/exec", "pods/attach", "roles", "rolebindings", "serviceaccounts"}
    for (kind, _), obj in objs.items():
        if kind in ("Role", "ClusterRole") and obj["metadata"]["name"].startswith(
            ("hubforge", "hf-")
        ):
            for rule in obj["rules"]:
                assert not forbidden & set(rule["resources"]), (obj["metadata"]["name"], rule)
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
    # only the gateway (in the hubforge service's pod) reaches endpoints
    service = objs[("Deployment", "hubforge-service")]["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= service.items()
    ls_from = objs[("NetworkPolicy", "hubforge-label-studio-ingress")]["spec"]["ingress"][0]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "hubforge-service"}}} in (
        ls_from["from"]
    )
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
    assert [p["port"] for p in egress[1]["ports"]] == [8020, 9866, 9867, 2049]  # HDFS only
    # endpointServer: hubforge -> the service builds endpoints that run hubforge-model-server
    # in the single-user images
    from traitlets.config import Config

    from hubforge.serving.kubernetes import KubernetesEndpoints

    config = json.loads(objs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"])
    settings = KubernetesEndpoints(config=Config(config)).settings()
    assert (settings.server, settings.image, settings.gpu_image) == (
        "hubforge",
        "registry.example/singleuser:1.0",
        "registry.example/singleuser-cuda:1.0",
    )


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
    # Hubforge's policies are off (z2jh's own stay, as its values say)
    assert not any(kind == "NetworkPolicy" and n.startswith("hubforge-") for kind, n in objs)
    assert ("Deployment", "hubforge-label-studio") not in objs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "hubforge.hdfs.mdoe=nfs"], "mdoe"),
        (["--set", "hubforge.hdfs.mode=s3"], "mode"),
        (["--set", "hubforge.labelStudio.storage=10"], "storage"),
        (["--set", "hubforge.labelStudio.postgres.host=db"], "passwordSecret is needed"),
        (["--set", "hubforge.quotas.maxJobPerUser=1"], "maxJobPerUser"),
        (["--set", "hubforge.profiles[0].slug=cpu,hubforge.profiles[0].gpu=1"], "gpu"),
        (["--set", "hubforge.culling.gpuIdleTimeout=-1"], "gpuIdleTimeout"),
        (["--set", "hubforge.publicOrigin=hub.example.org"], "publicOrigin"),
        (["--set", "hubforge.endpointServer=triton"], "endpointServer"),
    ],
)
def test_mistakes_fail_in_helm(chart, args, message):
    run = helm("template", "hf", str(chart), *args)
    assert run.returncode != 0
    assert message in run.stderr


def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_service_is_wired_to_the_hub_the_way_z2jh_expects(chart):
    objs = by_kind(render(chart, "--set", "hubforge.publicOrigin=https://hub.example.org"))
    z2jh = values()["jupyterhub"]
    # the hub's service entry points at the Service this chart makes
    service = objs[("Service", "hubforge-service")]
    (port,) = service["spec"]["ports"]
    assert z2jh["hub"]["services"]["hubforge"]["url"] == f"http://hubforge-service:{port['port']}"
    deployment = objs[("Deployment", "hubforge-service")]
    pod = deployment["spec"]["template"]["spec"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pod["serviceAccountName"] == "hubforge-service"  # the one with the Role
    # it checks tokens with the hub's API, which z2jh's policy opens only to pods with this
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    # z2jh keeps each hub.services token in its Secret "hub" under this key
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub",
        "key": "hub.services.hubforge.apiToken",
    }
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://hub:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == "/services/hubforge/"
    # the service key (signs sign-in links, authorises provisioning), not the admin's token
    assert env["HUBFORGE_LS_SERVICE_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "hubforge-label-studio-admin",
        "key": "service-key",
    }
    assert "HUBFORGE_LS_ADMIN_TOKEN" not in env
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # the config file the hub and the service read is the ConfigMap this chart renders
    mount = next(m for m in z2jh["hub"]["extraVolumeMounts"] if m["name"] == "hubforge-config")
    volume = next(v for v in z2jh["hub"]["extraVolumes"] if v["name"] == "hubforge-config")
    assert ("ConfigMap", volume["configMap"]["name"]) in objs
    path = env["HUBFORGE_CONFIG"]["value"]
    assert path == mount["mountPath"] + "/hubforge_config.json"
    assert f'"{path}"' in z2jh["hub"]["extraConfig"]["hubforge"]
    # Label Studio: under the hub's path, its links on the public address, admin from a Secret
    ls = objs[("Deployment", "hubforge-label-studio")]["spec"]["template"]["spec"]
    (lsc,) = ls["containers"]
    assert lsc["args"][-2:] == ["--prefix", "/services/label-studio"]
    ls_env = {e["name"]: e for e in lsc["env"]}
    assert ls_env["LABEL_STUDIO_HOST"]["value"] == "https://hub.example.org/services/label-studio"
    assert z2jh["hub"]["services"]["label-studio"]["url"] == "http://hubforge-label-studio:8080"
    assert set(objs[("Secret", "hubforge-label-studio-admin")]["data"]) == {
        "email",
        "password",
        "token",
        "service-key",
    }
    assert ls_env["HUBFORGE_LS_SERVICE_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "service-key"
    assert z2jh["cull"]["enabled"] is False  # the service culls per profile instead


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    from tests.kubespawner import use_throwaway_kubeconfig

    use_throwaway_kubeconfig(tmp_path, monkeypatch)


def test_hub_config_from_the_chart_makes_valid_user_pods(chart, tmp_path, kubeconfig):
    """helm renders the ConfigMap -> the hub's extraConfig reads it -> KubeSpawner pods."""
    from traitlets.config import Config

    from hubforge.service.quotas import Quotas
    from hubforge.workbench import load_config, load_workbench
    from tests.kubespawner import pod_manifest

    objs = by_kind(
        render(
            chart,
            "-f",
            str(LINT_VALUES),
            "--set",
            "hubforge.quotas.maxGpusPerUser=4",
            "--set",
            "hubforge.culling.gpuIdleTimeout=900",
        )
    )
    config_file = tmp_path / "hubforge_config.json"
    config_file.write_text(objs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"])
    snippet = values()["jupyterhub"]["hub"]["extraConfig"]["hubforge"]
    c = Config()
    # z2jh's own config has loaded hub.services (tokens from its Secret) before extraConfig
    c.JupyterHub.services = [
        {"name": "hubforge", "url": "http://hubforge-service:8000", "api_token": "from-secret"}
    ]
    exec(snippet.replace("/etc/hubforge/hubforge_config.json", str(config_file)), {"c": c})
    # Hubforge's pages; the home page asks the service with the service's token
    assert Path(c.JupyterHub.template_paths[0], "home.html").is_file()
    overview = c.JupyterHub.template_vars["hubforge_overview"](SimpleNamespace(name="ann"))
    assert overview.token == "from-secret" and overview.user == "ann"
    assert overview.service_api == "http://hubforge-service.hub.svc:8000/services/hubforge/api"

    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "hubforge-service")
    assert "servers" in role["scopes"] and role["services"] == ["hubforge"]
    assert "custom:hubforge:endpoints:call" in c.JupyterHub.custom_scopes
    slugs = [p["slug"] for p in c.KubeSpawner.profile_list]
    assert slugs == ["cpu", "gpu-1", "a100-4"]  # lint-values.yaml's profiles
    # the idle limits from the values, shown on the spawn page
    assert [p["description"] for p in c.KubeSpawner.profile_list] == [
        "stops after 2 h idle",
        "stops after 15 min idle",
        "Four A100s for big jobs · stops after 10 min idle",
    ]
    for slug in slugs:
        pod = pod_manifest(c, "alice", slug)
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        (container,) = [x for x in pod["spec"]["containers"] if x["name"] == "notebook"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HUBFORGE_SERVICE_URL"] == (
            "http://hubforge-service.hub.svc:8000/services/hubforge/api"
        )
        assert env["KRB5_KTNAME"] == "/etc/security/keytab/keytab"
        hook = container["lifecycle"]["postStart"]["exec"]["command"]
        assert "python -m hubforge.examples /home/jovyan" in hook[-1]  # ~/examples, once
        # the same environment as a local server (the extension adds TENSORBOARD_PROXY_URL)
        assert env["HUBFORGE_PROFILE"] == slug
        assert env["HUBFORGE_PROFILE_GPUS"] == {"cpu": "0", "gpu-1": "1", "a100-4": "4"}[slug]
        assert env["HUBFORGE_PUBLIC_ORIGIN"] == "https://hub.example.org"
        assert env["TF_USE_LEGACY_KERAS"] == "1" and env["HUBFORGE_DATA"] == "/mnt/hdfs"
        assert env["HUBFORGE_TENSORBOARD_IDLE_TIMEOUT"] == "3600"
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["hdfs"] == {
            "name": "hdfs",
            "persistentVolumeClaim": {"claimName": "hdfs-csi"},
        }
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert gpus == {"cpu": None, "gpu-1": "1", "a100-4": "4"}[slug]
        assert container["image"] == (
            "registry.example/singleuser-cuda:1.0" if gpus else "registry.example/singleuser:1.0"
        )

    # the service reads the same file: Kubernetes backends, quotas, per-profile culling
    workbench = load_workbench(str(config_file))
    assert (workbench.job_backend, workbench.endpoint_backend) == ("kubernetes", "kubernetes")
    assert Quotas.from_workbench(workbench).gpus == 4
    assert workbench.gpu_idle_timeout == 900
    assert workbench.gpu_idle_timeout_when_queued == 600  # idle GPUs give way to queued work
    assert [c["name"] for c in workbench.priority_classes] == ["interactive", "normal", "batch"]
    assert workbench.profiles[2]["idle_timeout"] == 600
    section = load_config(str(config_file))["KubernetesWorkloads"]
    assert section["namespace"] == "team-workloads"
    # a path a user gives the service (a model in their area) means the same file to it
    assert str(workbench.user_area("alice")) == env["HUBFORGE_USER_AREA"].replace(
        "{username}", "alice"
    )
    service_pod = objs[("Deployment", "hubforge-service")]["spec"]["template"]["spec"]
    (service_container,) = service_pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in service_container["volumeMounts"]}
    assert mounts["hdfs"] == str(workbench.shared_data) == "/mnt/hdfs"


# -- NetworkPolicies: every path the design needs is open, and no other -------------------
WORKLOADS = "hf-workloads"  # the chart's default workload namespace for release "hf"


def _matches(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(rule_peer: dict, peer: dict, namespace: str) -> bool:
    """One entry of a rule's from/to against a peer {labels, ip, namespace}: podSelector
    (in the policy's namespace unless a namespaceSelector says otherwise), namespaceSelector,
    or ipBlock (cidr minus except)."""
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        ip = ipaddress.ip_address(peer["ip"])
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    ns_labels = {"kubernetes.io/metadata.name": peer.get("namespace", namespace)}
    if "namespaceSelector" in rule_peer:
        if not _matches(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif peer.get("namespace", namespace) != namespace:
        return False
    return _matches(rule_peer.get("podSelector", {}), peer["labels"])


def _port_matches(rule_port: dict, port: int, protocol: str, named: dict[str, int]) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in rule_port:
        return True
    first = rule_port["port"]
    first = named.get(first, -1) if isinstance(first, str) else first
    return first <= port <= rule_port.get("endPort", first)


def _allowed(
    policies: list[dict],
    kind: str,
    pod: dict,
    peer: dict,
    port: int,
    protocol: str = "TCP",
    named: dict[str, int] | None = None,
) -> bool | None:
    """Does some policy selecting ``pod`` for ``kind`` (Ingress/Egress) let ``peer`` through
    on ``port``? Pods and peers are {labels, ip, namespace}; ``named`` resolves named ports
    (of the pod receiving the traffic). None when no policy selects the pod (then
    everything is allowed)."""
    receiver = pod if kind == "Ingress" else peer
    named = named or receiver.get("ports", {})  # named ports are the receiving pod's
    namespace = pod.get("namespace", "hub")
    selecting = [
        p
        for p in policies
        if kind in p["spec"]["policyTypes"]
        and p["metadata"].get("namespace", "hub") == namespace
        and _matches(p["spec"]["podSelector"], pod["labels"])
    ]
    if not selecting:
        return None
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            peer_ok = peers is None or any(_peer_matches(x, peer, namespace) for x in peers)
            port_ok = not ports or any(_port_matches(x, port, protocol, named) for x in ports)
            if peer_ok and port_ok:
                return True
    return False


def test_the_evaluator_understands_every_rule_kind():
    """The judge is tested too: ipBlock with except, namespaces, named ports, port ranges,
    matchExpressions."""
    pod = {"labels": {"app": "db"}, "ip": "10.4.0.9", "namespace": "hub"}
    policy = {
        "metadata": {"namespace": "hub"},
        "spec": {
            "podSelector": {
                "matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}],
                    "ports": [{"port": "sql"}],
                },
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ops"}
                            }
                        }
                    ],
                    "ports": [{"port": 9000, "endPort": 9010}],
                },
            ],
        },
    }
    outside = {"labels": {}, "ip": "10.9.1.1", "namespace": "other"}
    inside = {"labels": {}, "ip": "10.3.1.1", "namespace": "other"}
    ops = {"labels": {}, "ip": "192.168.1.1", "namespace": "ops"}
    named = {"sql": 5432}
    assert _allowed([policy], "Ingress", pod, inside, 5432, named=named) is True
    assert _allowed([policy], "Ingress", pod, inside, 5433, named=named) is False
    assert _allowed([policy], "Ingress", pod, outside, 5432, named=named) is False
    assert _allowed([policy], "Ingress", pod, inside, 5432, "UDP", named) is False
    assert _allowed([policy], "Ingress", pod, ops, 9005) is True
    assert _allowed([policy], "Ingress", pod, ops, 9011) is False
    assert _allowed([policy], "Ingress", {**pod, "labels": {"app": "web"}}, ops, 9005) is None


def test_network_policies_open_exactly_the_paths_hubforge_uses(chart):
    from hubforge.serving.objects import labels as endpoint_labels

    objs = by_kind(render(chart))
    policies = [o for (kind, _), o in objs.items() if kind == "NetworkPolicy"]

    def pod(name, ip):
        template = objs[("Deployment", name)]["spec"]["template"]
        ports = {
            port["name"]: port["containerPort"]
            for container in template["spec"]["containers"]
            for port in container.get("ports", [])
            if "name" in port
        }
        return {
            "labels": template["metadata"]["labels"],
            "ip": ip,
            "namespace": "hub",
            "ports": ports,
        }

    # every pod has an address in the cluster's pod network (10.0.0.0/8 on most clusters)
    service, ls = pod("hubforge-service", "10.4.0.10"), pod("hubforge-label-studio", "10.4.0.11")
    endpoint = {
        "labels": endpoint_labels("alice", "scorer"),
        "ip": "10.4.0.12",
        "namespace": WORKLOADS,  # jobs and endpoints live in a namespace of their own
    }
    proxy, hub = pod("proxy", "10.4.0.13"), pod("hub", "10.4.0.14")  # z2jh's own Deployments
    # the labels KubeSpawner gives a user pod under z2jh (its common labels + extraLabels)
    user_labels = {
        "component": "singleuser-server",
        "app": "jupyterhub",
        "release": "hf",
        "app.kubernetes.io/name": "jupyterhub",
        "app.kubernetes.io/instance": "hf",
        "hub.jupyter.org/network-access-hub": "true",
    }
    user = {"labels": user_labels, "ip": "10.4.0.15", "namespace": "hub"}
    other_user = {**user, "ip": "10.4.0.16"}
    api_server = {"labels": {}, "ip": "10.96.0.1", "namespace": "default"}
    needed = [  # (from, to, port): who must reach whom
        (proxy, service, 8000),  # the service's routes and the endpoint gateway
        (user, service, 8000),  # jobs, endpoints, labeling accounts from notebooks
        (hub, service, 8000),  # the hub's service health checks
        (proxy, ls, 8080),  # Label Studio's UI
        (user, ls, 8080),  # the labeling API from notebooks
        (service, ls, 8080),  # account provisioning
        (service, endpoint, 8501),  # the gateway
        (user, hub, 8081),
        (user, proxy, 8000),
    ]
    for source, target, port in needed:
        assert _allowed(policies, "Ingress", target, source, port) in (True, None), (
            source,
            target,
        )
        assert _allowed(policies, "Egress", source, target, port) in (True, None), (
            source,
            target,
        )
    # endpoints only through the gateway: not from notebooks, not from the proxy
    assert _allowed(policies, "Ingress", endpoint, user, 8501) is False
    assert _allowed(policies, "Ingress", endpoint, proxy, 8501) is False
    # notebooks reach nothing else in the cluster: another user's server, the API server,
    # any port of the pod network (whatever hdfsCIDRs defaults to)
    for target, port in [(other_user, 8888), (api_server, 443), (other_user, 2222)]:
        assert _allowed(policies, "Egress", user, target, port) is False, (target, port)
    # z2jh's own singleuser policy (rendered from the released chart) adds the internet, as
    # docs/kubernetes.md says (pip installs), never cloud metadata
    internet = {"labels": {}, "ip": "151.101.0.223", "namespace": "-"}
    assert _allowed(policies, "Egress", user, internet, 443) is True
    metadata = {"labels": {}, "ip": "169.254.169.254", "namespace": "-"}
    assert _allowed(policies, "Egress", user, metadata, 80) is False
    # DNS stays open
    assert _allowed(policies, "Egress", user, {**api_server, "ip": "10.96.0.10"}, 53, "UDP")


def test_job_and_endpoint_pods_are_denied_by_default(chart):
    """Job pods: only their own workers reach their TensorFlow port; they reach DNS and HDFS
    only. Endpoints: only the gateway reaches them; they reach nothing."""
    from hubforge.jobs import objects as job_objects
    from hubforge.jobs.spec import JobSpec
    from hubforge.serving.objects import labels as endpoint_labels

    objs = by_kind(render(chart, "--set", "hubforge.networkPolicies.hdfsCIDRs={10.20.0.0/24}"))
    settings = job_objects.ClusterSettings(namespace=WORKLOADS)
    per_job = [
        o
        for job in ("j1", "j2")
        for o in job_objects.job_objects("alice", job, JobSpec(name="j"), "x", settings, True)
        if o["kind"] == "NetworkPolicy"
    ]
    policies = [o for (kind, _), o in objs.items() if kind == "NetworkPolicy"] + per_job

    def job_pod(job, ip):
        return {"labels": job_objects.labels("alice", job), "ip": ip, "namespace": WORKLOADS}

    a, b, other_job = (
        job_pod("j1", "10.4.1.1"),
        job_pod("j1", "10.4.1.2"),
        job_pod("j2", "10.4.1.3"),
    )
    user = {"labels": {"component": "singleuser-server"}, "ip": "10.4.0.15", "namespace": "hub"}
    endpoint = {"labels": endpoint_labels("alice", "m"), "ip": "10.4.2.1", "namespace": WORKLOADS}
    outside = {
        "api server": ({"labels": {}, "ip": "10.96.0.1", "namespace": "default"}, 443),
        "metadata": ({"labels": {}, "ip": "169.254.169.254", "namespace": "-"}, 80),
        "internet": ({"labels": {}, "ip": "151.101.0.223", "namespace": "-"}, 443),
        "a notebook": (user, 8888),
    }
    assert _allowed(policies, "Egress", a, b, 2222) and _allowed(policies, "Ingress", b, a, 2222)
    for stranger in (user, other_job, endpoint):
        assert _allowed(policies, "Ingress", a, stranger, 2222) is False, stranger
    for what, (peer, port) in outside.items():
        assert _allowed(policies, "Egress", a, peer, port) is False, what
        assert _allowed(policies, "Egress", endpoint, peer, port) is False, what
    hdfs = {"labels": {}, "ip": "10.20.0.5", "namespace": "-"}
    assert _allowed(policies, "Egress", a, hdfs, 8020) and not _allowed(
        policies, "Egress", a, hdfs, 22
    )
    dns = {"labels": {}, "ip": "10.96.0.10", "namespace": "kube-system"}
    assert _allowed(policies, "Egress", a, dns, 53, "UDP")


def test_kueue_objects_match_the_builders_and_kueues_crds(chart, tmp_path):
    """With hubforge.queue.kueue.enabled the chart makes the queue objects hubforge.jobs.kueue
    builds (the service makes per-user LocalQueues with the same code), each valid for
    Kueue v0.19.2's CRDs; without Kueue's API in the cluster it fails, saying what to do."""
    import jsonschema

    from hubforge.jobs.fairshare import classes_from_config
    from hubforge.jobs.kueue import Flavor, QueueSettings, queue_objects
    from tests.unit.test_kueue_objects import schemas

    values = tmp_path / "kueue.yaml"
    flavors = [
        {
            "name": "a100",
            "gpus": 8,
            "nodeLabels": {"nvidia.com/gpu.product": "A100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
        {"name": "t4", "gpus": 4},
    ]
    classes = [  # the admin's own classes, not the defaults
        {"name": "oncall", "value": 500, "users": ["olga"]},
        {"name": "normal", "value": 200},
        {"name": "overnight", "value": 50, "preemptible": True},
    ]
    values.write_text(
        yaml.safe_dump(
            {
                "hubforge": {
                    "queue": {
                        "kueue": {
                            "enabled": True,
                            "cpu": "32",
                            "memory": "128Gi",
                            "flavors": flavors,
                        },
                        "priorityClasses": classes,
                    }
                }
            }
        )
    )
    run = helm("template", "hf", str(chart), "--namespace", "hub", "-f", str(values))
    assert run.returncode != 0 and "needs Kueue v0.19 or later installed" in run.stderr
    docs = render(chart, "-f", str(values), "--api-versions", "kueue.x-k8s.io/v1beta2")
    ours = [d for d in docs if d["apiVersion"].startswith("kueue.x-k8s.io/")]
    settings = QueueSettings(
        namespace="hf-workloads",
        cpu="32",
        memory="128Gi",
        flavors=[
            Flavor("a100", 8, flavors[0]["nodeLabels"], flavors[0]["tolerations"]),
            Flavor("t4", 4),
        ],
        classes=classes_from_config(classes),
    )
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(ours, key=key) == sorted(queue_objects(settings), key=key)
    kinds = schemas()
    for obj in ours:
        jsonschema.validate(obj, kinds[obj["kind"]])
    # the service queues jobs with Kueue and may make LocalQueues and read Workloads only
    config = next(d for d in docs if d["metadata"]["name"] == "hubforge-config")
    given = json.loads(config["data"]["hubforge_config.json"])
    jobs = given["KubernetesJobs"]
    assert jobs["kueue"] is True and jobs["kueue_cluster_queue"] == "hubforge"
    # the service's queue has the same classes Kueue's WorkloadPriorityClasses name
    assert given["Workbench"]["priority_classes"] == classes
    wpc = {d["metadata"]["name"]: d["value"] for d in ours if d["kind"] == "WorkloadPriorityClass"}
    assert wpc == {"hubforge-oncall": 500, "hubforge-normal": 200, "hubforge-overnight": 50}
    role = next(
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "hubforge-service"
    )
    kueue_rules = [r for r in role["rules"] if r["apiGroups"] == ["kueue.x-k8s.io"]]
    assert kueue_rules == [
        {"apiGroups": ["kueue.x-k8s.io"], "resources": ["localqueues"], "verbs": ["get", "create"]},
        {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["get", "list"]},
    ]
    # off by default: nothing of Kueue's
    plain = render(chart)
    assert not [d for d in plain if d["apiVersion"].startswith("kueue.x-k8s.io/")]
    role = next(
        d for d in plain if d["kind"] == "Role" and d["metadata"]["name"] == "hubforge-service"
    )
    assert not [r for r in role["rules"] if "kueue.x-k8s.io" in r["apiGroups"]]


def test_priority_classes_without_normal_or_with_bad_names_are_refused(chart, tmp_path):
    """A job that asks for no class gets 'normal': a list without it cannot be installed."""
    for classes, says in [
        ([{"name": "urgent", "value": 500}], "normal"),
        ([{"name": "normal", "value": 200}, {"name": "Bad Name", "value": 1}], "name"),
        ([{"name": "normal", "value": "high"}], "value"),
    ]:
        values = tmp_path / "classes.yaml"
        values.write_text(yaml.safe_dump({"hubforge": {"queue": {"priorityClasses": classes}}}))
        run = helm("template", "hf", str(chart), "--namespace", "hub", "-f", str(values))
        assert run.returncode != 0 and "priorityClasses" in run.stderr, run.stderr
        assert says in run.stderr, run.stderr


def test_notifications_from_the_values_reach_the_service(chart, tmp_path, monkeypatch):
    """SMTP and webhook settings (docs/schedules.md): into the config the service loads,
    the password from a Secret by its environment, never into the ConfigMap."""
    from hubforge.notify import Notifications
    from hubforge.workbench import load_config, load_workbench

    given = tmp_path / "notifications.yaml"
    given.write_text(
        "hubforge:\n"
        "  publicOrigin: https://hub.example.org\n"
        "  notifications:\n"
        "    smtpHost: smtp.example.org\n"
        "    smtpPasswordSecret: smtp-login\n"
        "    emailTemplate: '{username}@example.org'\n"
        "    webhookPrefixes: ['https://chat.example.org/hooks/']\n"
    )
    objs = by_kind(render(chart, "-f", str(given)))
    text = objs[("ConfigMap", "hubforge-config")]["data"]["hubforge_config.json"]
    config_file = tmp_path / "hubforge_config.json"
    config_file.write_text(text)
    load_workbench(str(config_file))  # the service's own check of every key
    monkeypatch.setenv("HUBFORGE_SMTP_PASSWORD", "from-the-secret")
    n = Notifications(config=load_config(str(config_file)))
    assert (n.smtp_host, n.smtp_port, n.smtp_starttls) == ("smtp.example.org", 587, True)
    assert n.email_of("sam") == "sam@example.org" and n.smtp_password == "from-the-secret"
    assert n.public_url == "https://hub.example.org/"
    n.check_webhook("https://chat.example.org/hooks/ml")
    (container,) = objs[("Deployment", "hubforge-service")]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["HUBFORGE_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "smtp-login",
        "key": "password",
    }
    assert "password" not in text.lower() or "smtp_password" not in text
