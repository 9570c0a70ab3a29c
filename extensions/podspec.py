"""What every pod Hubforge builds on Kubernetes shares: the HDFS mount point, GPUs and their
taint, the non-root security settings, and the cluster settings common to jobs and endpoints.
"""

from __future__ import annotations

from typing import Any

from traitlets import Dict, Unicode
from traitlets.config import Configurable

DATA_MOUNT = "/mnt/hdfs"
GPU_RESOURCE = "nvidia.com/gpu"


def user_data_mounts(owner: str, volume: str = "hdfs") -> list[dict[str, Any]]:
    """What a user's pods (notebook, jobs) mount of HDFS at /mnt/hdfs: their own area
    read-write and the shared data sets read-only, never another user's area. ``owner`` may
    be KubeSpawner's ``{username}`` template."""
    return [
        {"name": volume, "mountPath": f"{DATA_MOUNT}/users/{owner}", "subPath": f"users/{owner}"},
        {
            "name": volume,
            "mountPath": f"{DATA_MOUNT}/datasets",
            "subPath": "datasets",
            "readOnly": True,
        },
    ]


def gpu_tolerations() -> list[dict[str, Any]]:
    """Tolerate the taint GPU nodes usually carry."""
    return [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def pod_security(uid: int) -> dict[str, Any]:
    """Pod securityContext: non-root, the same uid/gid for files, the runtime's seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(read_only_root: bool) -> dict[str, Any]:
    """Container securityContext: no privilege escalation, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
    }


class KubernetesWorkloads(Configurable):
    """Settings jobs and endpoints share (``c.KubernetesWorkloads.*`` sets both; the
    subclasses' sections set one)."""

    namespace = Unicode("hubforge", config=True, help="Namespace the workloads run in.")
    hdfs_volume = Dict(
        {"persistentVolumeClaim": {"claimName": "hubforge-hdfs"}},
        config=True,
        help=f"Volume source of the HDFS mount at {DATA_MOUNT} (PVC, nfs, csi or hostPath).",
    )
    node_selector = Dict(config=True, help="nodeSelector of the workloads' pods.")
