"""Real KubeSpawner pod manifests for each profile, validated against the Kubernetes schemas."""

from __future__ import annotations

import os

import kubernetes_validate
import pytest
from traitlets.config import Config

from hubforge.hub import kubernetes
from hubforge.profiles import ProfileError
from tests.kubespawner import pod_manifest, use_throwaway_kubeconfig

PROFILES = [
    {"slug": "cpu", "display_name": "CPU", "cpu": 2, "memory": "8G", "default": True},
    {"slug": "gpu-1", "display_name": "1 GPU", "gpus": 1, "cpu": 8, "memory": "32G"},
    {
        "slug": "a100-4",
        "display_name": "4 A100",
        "gpus": 4,
        "gpu_type": "NVIDIA-A100-SXM4-40GB",
    },
]


@pytest.fixture(autouse=True)
def throwaway_kubeconfig(tmp_path, monkeypatch):
    use_throwaway_kubeconfig(tmp_path, monkeypatch)


def manifest(slug: str, kerberos: str = "") -> dict:
    c = Config()
    c.KubernetesProfiles.hdfs_volume = {"nfs": {"server": "hdfs-nfs.example", "path": "/"}}
    c.KubernetesProfiles.kerberos_secret = kerberos
    kubernetes.configure(c, PROFILES)
    return pod_manifest(c, "alice", slug)


@pytest.mark.parametrize("slug", ["cpu", "gpu-1", "a100-4"])
def test_every_profile_makes_a_valid_pod(slug):
    pod = manifest(slug)
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
    spec = pod["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "notebook"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["fsGroup"] == 100
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/hdfs/users/alice"]["subPath"] == "users/alice"
    assert not mounts["/mnt/hdfs/users/alice"].get("readOnly")
    assert mounts["/mnt/hdfs/datasets"] == {
        "name": "hdfs",
        "mountPath": "/mnt/hdfs/datasets",
        "subPath": "datasets",
        "readOnly": True,
    }
    assert mounts["/etc/hadoop/conf"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["hdfs"]["nfs"] == {"server": "hdfs-nfs.example", "path": "/"}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "home-alice"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HUBFORGE_DATA"] == "/mnt/hdfs" and env["TF_USE_LEGACY_KERAS"] == "1"
    assert env["HUBFORGE_USER_AREA"] == "/mnt/hdfs/users/alice"
    limits = container["resources"].get("limits", {})
    gpus = {"cpu": 0, "gpu-1": 1, "a100-4": 4}[slug]
    if gpus:
        assert limits["nvidia.com/gpu"] == str(gpus)
        assert container["image"] == "hubforge/singleuser-cuda:0.1.0"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
    else:
        assert "nvidia.com/gpu" not in limits
        assert container["image"] == "hubforge/singleuser:0.1.0"
    if slug == "a100-4":
        assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    if slug == "cpu":
        assert limits["cpu"] == "2" or float(limits["cpu"]) == 2
        assert int(container["resources"]["requests"]["memory"]) == 8 * 1024**3


def test_kerberos_keytab():
    pod = manifest("cpu", kerberos="hdfs-keytab")
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["keytab"]["secret"]["secretName"] == "hdfs-keytab"
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KRB5_KTNAME"] == "/etc/security/keytab/keytab"


def test_bad_profiles_are_refused():
    with pytest.raises(ProfileError, match="gpu_type"):
        kubernetes.profile_list(
            [{"slug": "cpu", "gpu_type": "A100"}], kubernetes.KubernetesProfiles()
        )


def test_server_extension_points_tensorboard_at_its_own_proxy(monkeypatch):
    """On Kubernetes only the server knows its prefix: the extension sets what the local
    spawner sets, so %tensorboard works the same in both modes."""
    from hubforge.app import HubforgeExtension

    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/hub/user/alice/")
    # the extension sets it in os.environ for real: set, then delete, so that monkeypatch
    # records its value before this test (or its absence) and puts that back afterwards
    # (delenv of an unset name records nothing: the value set below would leak)
    monkeypatch.setenv("TENSORBOARD_PROXY_URL", "")
    monkeypatch.delenv("TENSORBOARD_PROXY_URL")
    HubforgeExtension().initialize_settings()
    assert os.environ["TENSORBOARD_PROXY_URL"] == "/hub/user/alice/proxy/%PORT%/"
    monkeypatch.setenv("TENSORBOARD_PROXY_URL", "/set/by/spawner/%PORT%/")
    HubforgeExtension().initialize_settings()
    assert os.environ["TENSORBOARD_PROXY_URL"] == "/set/by/spawner/%PORT%/"


def test_a_job_pod_mounts_exactly_what_its_owners_notebook_pod_mounts():
    """A job is its owner's code: the same HDFS view as their notebook (their own area
    read-write, data sets read-only), never the whole HDFS or another user's area."""
    from hubforge.jobs.objects import ClusterSettings, pod_template
    from hubforge.jobs.spec import JobSpec

    notebook = manifest("cpu")
    (container,) = [c for c in notebook["spec"]["containers"] if c["name"] == "notebook"]
    notebook_hdfs = [m for m in container["volumeMounts"] if m["name"] == "hdfs"]
    job = pod_template("alice", "mnist-abc123", JobSpec(name="mnist"), ClusterSettings())
    job_hdfs = [m for m in job["spec"]["containers"][0]["volumeMounts"] if m["name"] == "hdfs"]
    assert job_hdfs == notebook_hdfs
    assert all(m.get("subPath") for m in job_hdfs), "no mount of the whole HDFS"
