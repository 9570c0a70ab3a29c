"""KubeSpawner configuration from the same profile list as local mode.

Profiles become KubeSpawner's ``profile_list`` (CPU/memory guarantees and limits, GPU limits,
GPU-type node selectors and the GPU taint's toleration, the CPU or CUDA image). Every user pod
mounts the team's HDFS at /mnt/hdfs (their ``users/<name>`` read-write, ``datasets``
read-only), the Hadoop client configuration at /etc/hadoop/conf, an optional Kerberos keytab,
and a home PVC; it runs as non-root with no service-account token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Dict, Unicode
from traitlets.config import Configurable

from hubforge.podspec import DATA_MOUNT, GPU_RESOURCE, gpu_tolerations, user_data_mounts
from hubforge.profiles import validate_profiles
from hubforge.service.culler import idle_note, idle_timeout
from hubforge.workbench import Workbench, load_config, load_workbench


class KubernetesProfiles(Configurable):
    """What the cluster provides to user pods (set by the Helm chart)."""

    image = Unicode("hubforge/singleuser:0.1.0", config=True, help="Image of CPU profiles.")
    gpu_image = Unicode(
        "hubforge/singleuser-cuda:0.1.0", config=True, help="Image of GPU profiles."
    )
    gpu_type_label = Unicode(
        "nvidia.com/gpu.product",
        config=True,
        help="Node label that names the GPU model (a profile's gpu_type selects on it).",
    )
    hdfs_volume = Dict(
        {"persistentVolumeClaim": {"claimName": "hdfs"}},
        config=True,
        help="Volume source of the HDFS mount (nfs, csi PVC or hostPath).",
    )
    hadoop_config_map = Unicode(
        "hubforge-hadoop-conf", config=True, help="ConfigMap with core-site.xml, hdfs-site.xml."
    )
    kerberos_secret = Unicode("", config=True, help="Secret with a `keytab` key ('' for none).")
    home_storage = Unicode("10Gi", config=True, help="Size of each user's home PVC.")
    service_url = Unicode(
        "http://hubforge-service:8000/services/hubforge/api",
        config=True,
        help="The hubforge service's API as user pods reach it (HUBFORGE_SERVICE_URL).",
    )
    public_origin = Unicode(
        "", config=True, help="Scheme and host users reach the hub at (HUBFORGE_PUBLIC_ORIGIN)."
    )


def profile_list(
    profiles: list[dict[str, Any]], s: KubernetesProfiles, idle: tuple[int, int] | None = None
) -> list[dict[str, Any]]:
    """KubeSpawner's profile_list for Hubforge profiles (validated the same way); ``idle``:
    the CPU and GPU idle limits shown under each profile (default: Workbench's defaults)."""
    if idle is None:
        idle = (Workbench.idle_timeout.default_value, Workbench.gpu_idle_timeout.default_value)
    result = []
    for p in validate_profiles(profiles):
        override: dict[str, Any] = {"image": s.gpu_image if p["gpus"] else s.image}
        if p.get("cpu"):
            override["cpu_limit"] = float(p["cpu"])
            override["cpu_guarantee"] = float(p["cpu"])
        if p.get("memory"):
            override["mem_limit"] = p["memory"]
            override["mem_guarantee"] = p["memory"]
        # merged into KubeSpawner.environment (local mode sets the same two)
        override["environment"] = {
            "HUBFORGE_PROFILE": p["slug"],
            "HUBFORGE_PROFILE_GPUS": str(p["gpus"]),
        }
        if p["gpus"]:
            override["extra_resource_limits"] = {GPU_RESOURCE: str(p["gpus"])}
            override["tolerations"] = gpu_tolerations()
            if p.get("gpu_type"):
                override["node_selector"] = {s.gpu_type_label: p["gpu_type"]}
        result.append(
            {
                "display_name": p["display_name"],
                "slug": p["slug"],
                "description": " · ".join(
                    x for x in (p.get("description", ""), idle_note(idle_timeout(p, *idle))) if x
                ),
                "default": bool(p.get("default")),
                "kubespawner_override": override,
            }
        )
    return result


def configure(c: Any, profiles: list[dict[str, Any]], workbench: Any = None) -> None:
    """Fill JupyterHub config ``c`` for KubeSpawner (the chart's hub config calls this);
    ``workbench`` adds its idle limits (shown per profile) and TensorBoard limits."""
    s = KubernetesProfiles(config=c)
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    idle = (workbench.idle_timeout, workbench.gpu_idle_timeout) if workbench else None
    c.KubeSpawner.profile_list = profile_list(profiles, s, idle)
    c.KubeSpawner.uid = 1000
    c.KubeSpawner.gid = 100
    c.KubeSpawner.fs_gid = 100
    c.KubeSpawner.allow_privilege_escalation = False
    c.KubeSpawner.automount_service_account_token = False
    c.KubeSpawner.container_security_context = {"capabilities": {"drop": ["ALL"]}}
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.pvc_name_template = "home-{user_server}"
    c.KubeSpawner.storage_capacity = s.home_storage
    c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
    volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "home-{user_server}"}},
        {"name": "hdfs", **s.hdfs_volume},
        {"name": "hadoop-conf", "configMap": {"name": s.hadoop_config_map}},
    ]
    mounts = [
        {"name": "home", "mountPath": "/home/jovyan"},
        *user_data_mounts("{username}"),
        {"name": "hadoop-conf", "mountPath": "/etc/hadoop/conf", "readOnly": True},
    ]
    if s.kerberos_secret:
        volumes.append(
            {"name": "keytab", "secret": {"secretName": s.kerberos_secret, "defaultMode": 0o400}}
        )
        mounts.append({"name": "keytab", "mountPath": "/etc/security/keytab", "readOnly": True})
    c.KubeSpawner.volumes = volumes
    c.KubeSpawner.volume_mounts = mounts
    c.KubeSpawner.environment = {
        "HUBFORGE_DATA": DATA_MOUNT,
        "HUBFORGE_USER_AREA": f"{DATA_MOUNT}/users/{{username}}",
        "HADOOP_CONF_DIR": "/etc/hadoop/conf",
        "TF_USE_LEGACY_KERAS": "1",
        "HUBFORGE_SERVICE_URL": s.service_url,
        **(
            {
                "HUBFORGE_TENSORBOARD_IDLE_TIMEOUT": str(workbench.tensorboard_idle_timeout),
                "HUBFORGE_TENSORBOARD_MAX": str(workbench.tensorboard_max),
            }
            if workbench is not None
            else {}
        ),
        **({"HUBFORGE_PUBLIC_ORIGIN": s.public_origin} if s.public_origin else {}),
        **({"KRB5_KTNAME": "/etc/security/keytab/keytab"} if s.kerberos_secret else {}),
    }
    # ~/examples on the first start of a pod (the home PVC keeps the marker): the same series
    # a local server gets; `|| true`: a failed copy never stops the server from starting
    c.KubeSpawner.lifecycle_hooks = {
        "postStart": {
            "exec": {"command": ["sh", "-c", "python -m hubforge.examples /home/jovyan || true"]}
        }
    }


def configure_hub(c: Any, config_path: str = "/etc/hubforge/hubforge_config.json") -> None:
    """The chart's hub config (z2jh ``hub.extraConfig``): the Hubforge config file the chart
    renders (profiles, quotas, culling, cluster settings) becomes KubeSpawner settings, the
    hubforge service's role and the endpoint-call scope."""
    from hubforge.service.names import SERVICE_NAME

    from .config import custom_scopes, roles
    from .home import overview_var, team_var

    workbench = load_workbench(config_path)  # stops the hub on a bad key, naming it
    c.merge(load_config(config_path))
    configure(c, workbench.profiles, workbench)
    c.JupyterHub.custom_scopes = custom_scopes()
    existing = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    ours = roles(password_users=False)  # the chart's authenticator keeps its own users
    names = {r["name"] for r in ours}
    c.JupyterHub.load_roles = [r for r in existing if r["name"] not in names] + ours
    # Hubforge's pages: name and logo, profile cards, the home page's jobs/endpoints/projects
    # (asked of the hubforge service with its z2jh-managed token, hub.services.hubforge)
    here = Path(__file__).resolve().parent
    c.JupyterHub.template_paths = [str(here / "templates")]
    c.JupyterHub.logo_file = str(here / "static" / "hubforge-logo.svg")
    services = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
    token = next((x.get("api_token") for x in services if x.get("name") == SERVICE_NAME), None)
    if token:
        service_api = KubernetesProfiles(config=c).service_url
        c.JupyterHub.template_vars = {
            "hubforge_overview": overview_var(service_api, token),
            "hubforge_team": team_var(service_api, token),
        }
