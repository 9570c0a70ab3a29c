"""The Pod Security Standards' `restricted` profile, written from the Kubernetes
documentation (concepts/security/pod-security-standards, v1.30): what a pod spec breaks.

Baseline controls (host namespaces, privileged, capabilities beyond the default set,
hostPath, host ports, AppArmor, SELinux, /proc mount, seccomp Unconfined, sysctls) and the
restricted ones (volume types, privilege escalation, running as non-root and non-zero uid,
seccomp RuntimeDefault/Localhost, dropping ALL capabilities, adding only NET_BIND_SERVICE).
"""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every rule of `restricted` that the pod spec ``pod`` breaks (empty: admitted)."""
    found = []
    sc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        value = pod.get(field)
        if (field == "hostUsers" and value is True) or (field != "hostUsers" and value):
            found.append(f"pod: {field}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}: {', '.join(sorted(kinds))} not allowed")
    for sysctl in sc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"pod: sysctl {sysctl['name']}")
    found += _selinux("pod", sc)
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append("pod: seccompProfile Unconfined")
    if sc.get("runAsUser") == 0:
        found.append("pod: runAsUser 0")
    containers = [
        *(("container", c) for c in pod.get("containers") or []),
        *(("initContainer", c) for c in pod.get("initContainers") or []),
        *(("ephemeralContainer", c) for c in pod.get("ephemeralContainers") or []),
    ]
    for kind, c in containers:
        where = f"{kind} {c.get('name')}"
        csc = c.get("securityContext") or {}
        if csc.get("privileged"):
            found.append(f"{where}: privileged")
        if csc.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount")
        found += _selinux(where, csc)
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']}")
        if csc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = csc.get("runAsNonRoot", sc.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"{where}: runAsNonRoot must be true")
        if csc.get("runAsUser", sc.get("runAsUser")) == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = (csc.get("seccompProfile") or sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where}: capabilities must drop ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            found.append(f"{where}: adds capabilities {sorted(extra)}")
    return found


def _selinux(where: str, sc: dict[str, Any]) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    bad = []
    if options.get("type", "") not in SELINUX_TYPES:
        bad.append(f"{where}: seLinuxOptions.type {options['type']}")
    if options.get("user") or options.get("role"):
        bad.append(f"{where}: seLinuxOptions user/role")
    return bad


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a workload object (Pod, Deployment, Job, TFJob, InferenceService)."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [spec["template"]["spec"]]
    if kind == "TFJob":
        return [r["template"]["spec"] for r in spec["tfReplicaSpecs"].values()]
    if kind == "InferenceService":
        return [spec["predictor"]]
    return []
