"""The Kubernetes jobs backend against a fake API server on loopback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from hubforge import jobs
from hubforge.jobs import objects
from hubforge.jobs.kubernetes import KubernetesJobBackend
from hubforge.jobs.kueue import PRIORITY_LABEL, QUEUE_LABEL, QueueSettings, local_queue_name
from hubforge.jobs.spec import JobSpec
from tests.fake_k8s import FakeKubernetes

SETTINGS = objects.ClusterSettings(namespace="team-a", image="registry.example/hf:1.0")
SPEC = JobSpec(name="mnist", workers=2, gpus_per_worker=1, max_restarts=1)


def configuration(fake: FakeKubernetes, token: str | None) -> client.Configuration:
    config = client.Configuration(host=fake.url)
    if token:
        config.api_key = {"BearerToken": token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
    return config


@pytest.fixture(params=["tfjob", "indexed-job"])
def cluster(request, tmp_path):
    fake = FakeKubernetes(crds={"tfjobs.kubeflow.org"} if request.param == "tfjob" else set())
    backend = KubernetesJobBackend(configuration(fake, fake.token), SETTINGS, tmp_path / "hdfs")
    yield fake, backend, request.param
    backend.close()
    fake.stop()


def test_submit_creates_the_builders_objects(cluster):
    fake, backend, mode = cluster
    record = backend.submit("alice", SPEC, "print('train')\n", job_id="mnist-abc123")
    assert record["id"] == "mnist-abc123" and record["owner"] == "alice"
    assert record["state"] == "pending" and record["backend"] == "kubernetes"
    expected = objects.job_objects(
        "alice", "mnist-abc123", SPEC, "print('train')\n", SETTINGS, tfjob_available=mode == "tfjob"
    )
    stored = {(o["kind"], o["metadata"]["name"]): o for o in fake.objects.values()}
    assert len(stored) == len(expected)
    for obj in expected:
        sent = dict(stored[(obj["kind"], obj["metadata"]["name"])])
        meta = dict(sent["metadata"])
        for server_field in ("uid", "creationTimestamp", "resourceVersion", "annotations"):
            meta.pop(server_field, None)
        assert {**sent, "metadata": meta} == obj
    main = stored[("TFJob" if mode == "tfjob" else "Job", "hf-mnist-abc123")]
    assert json.loads(main["metadata"]["annotations"]["hubforge.io/spec"])["workers"] == 2


def test_status_replicas_logs_and_cancel(cluster):
    fake, backend, mode = cluster
    backend.submit("alice", SPEC, "x = 1\n", job_id="mnist-abc123")
    kind = "tfjobs" if mode == "tfjob" else "jobs"
    main = fake.objects[(kind, "team-a", "hf-mnist-abc123")]
    main["status"] = (
        {"conditions": [{"type": "Running", "status": "True"}]}
        if mode == "tfjob"
        else {"active": 2}
    )
    index_label = (
        "training.kubeflow.org/replica-index"
        if mode == "tfjob"
        else "batch.kubernetes.io/job-completion-index"
    )
    for i in range(2):
        fake.add_pod(
            "team-a",
            f"hf-mnist-abc123-{i}",
            {**objects.labels("alice", "mnist-abc123"), index_label: str(i)},
            "Running",
            log=f"Epoch 1/3 from worker {i}\n",
        )
    record = backend.get("alice", "mnist-abc123")
    assert record["state"] == "running"
    assert sorted(record["replicas"]) == ["worker-0", "worker-1"]
    assert record["replicas"]["worker-1"]["state"] == "running"
    text, offset = backend.logs("alice", "mnist-abc123", "worker-1")
    assert text == "Epoch 1/3 from worker 1\n" and offset == len(text)
    assert backend.logs("alice", "mnist-abc123", "worker-1", offset) == ("", offset)
    with pytest.raises(jobs.JobError, match="this job has worker-0, worker-1"):
        backend.logs("alice", "mnist-abc123", "worker-7")
    assert [r["id"] for r in backend.list("alice")] == ["mnist-abc123"]

    backend.cancel("alice", "mnist-abc123")
    assert not [k for k in fake.objects if k[0] != "pods"], "TFJob/Job, Service, ConfigMap gone"
    with pytest.raises(jobs.JobNotFound):
        backend.get("alice", "mnist-abc123")


def test_finished_states(cluster):
    fake, backend, mode = cluster
    backend.submit("alice", SPEC, "x = 1\n", job_id="mnist-abc123")
    kind = "tfjobs" if mode == "tfjob" else "jobs"
    done = "Succeeded" if mode == "tfjob" else "Complete"
    fake.objects[(kind, "team-a", "hf-mnist-abc123")]["status"] = {
        "conditions": [{"type": done, "status": "True", "message": "all workers finished"}],
    }
    assert backend.get("alice", "mnist-abc123")["state"] == "succeeded"
    with pytest.raises(jobs.JobError, match="already succeeded"):
        backend.cancel("alice", "mnist-abc123")
    fake.objects[(kind, "team-a", "hf-mnist-abc123")]["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}],
    }
    record = backend.get("alice", "mnist-abc123")
    assert (record["state"], record["reason"]) == ("failed", "BackoffLimitExceeded")


def test_other_users_jobs_are_invisible(cluster):
    fake, backend, _ = cluster
    backend.submit("alice", SPEC, "x = 1\n", job_id="mnist-abc123")
    with pytest.raises(jobs.JobNotFound):
        backend.get("mallory", "mnist-abc123")
    with pytest.raises(jobs.JobNotFound):
        backend.cancel("mallory", "mnist-abc123")
    assert backend.list("mallory") == []
    assert len([k for k in fake.objects if k[0] != "pods"]) >= 2  # nothing deleted


def test_refused_objects_leave_nothing_behind(cluster):
    fake, backend, _ = cluster
    backend.submit("alice", SPEC, "x = 1\n", job_id="mnist-abc123")
    before = set(fake.objects)
    # Same id again: the ConfigMap already exists -> 409; nothing new may remain.
    with pytest.raises(jobs.JobError, match="Kubernetes refused the job"):
        backend.submit("alice", SPEC, "x = 2\n", job_id="mnist-abc123")
    assert set(fake.objects) <= before


def test_unauthenticated_calls_are_refused(tmp_path):
    fake = FakeKubernetes()
    backend = KubernetesJobBackend(configuration(fake, None), SETTINGS, tmp_path)
    with pytest.raises(ApiException) as info:
        backend.list("alice")
    assert info.value.status == 401
    backend.close()
    fake.stop()


def test_figures_a_pod_draws_are_listed_with_the_job(cluster, tmp_path):
    """The chief pod runs the same runner as a local job and writes its figures to the shared
    data area; the service lists them with the job, in drawing order, and never through a
    link the owner put there."""
    import os
    import subprocess
    import sys

    _, backend, _ = cluster
    backend.submit("alice", SPEC, "x = 1\n", job_id="mnist-abc123")
    assert backend.get("alice", "mnist-abc123")["artifacts"]["figures"] == []
    folder = tmp_path / "hdfs" / "users" / "alice" / "jobs" / "mnist-abc123"
    folder.mkdir(parents=True)
    script = tmp_path / "plots.py"
    script.write_text(
        "import matplotlib.pyplot as plt\n"
        "for n in range(11):\n"
        "    plt.plot([0, n]); plt.title(str(n)); plt.show()\n"
    )
    env = {**os.environ, "HUBFORGE_JOB_DIR": str(folder), "HUBFORGE_REPLICA": "worker-0"}
    env.pop("TF_CONFIG", None)
    subprocess.run([sys.executable, "-m", "hubforge.jobs.runner", str(script)], env=env, check=True)
    figures = backend.get("alice", "mnist-abc123")["artifacts"]["figures"]
    assert [Path(f).name for f in figures] == [f"figure-{n}.png" for n in range(1, 12)]
    assert all(Path(f).read_bytes().startswith(b"\x89PNG") for f in figures)

    shutil.rmtree(folder / "figures")
    (folder / "figures").symlink_to(tmp_path / "elsewhere")  # alice points at other files
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "figure-1.png").write_bytes(b"\x89PNG not hers")
    assert backend.get("alice", "mnist-abc123")["artifacts"]["figures"] == []


@pytest.fixture(params=["tfjob", "indexed-job"])
def kueue_cluster(request, tmp_path):
    fake = FakeKubernetes(crds={"tfjobs.kubeflow.org"} if request.param == "tfjob" else set())
    queue = QueueSettings(namespace="team-a")
    settings = objects.ClusterSettings(namespace="team-a", image="hf:1", queue=queue)
    backend = KubernetesJobBackend(configuration(fake, fake.token), settings, tmp_path / "hdfs")
    yield fake, backend, request.param
    backend.close()
    fake.stop()


def condition(kind: str, status: str, message: str = "") -> dict:
    """A Workload condition as Kueue writes it (metav1.Condition: all five fields)."""
    return {
        "type": kind,
        "status": status,
        "reason": "Pending" if status == "False" else kind,
        "message": message or kind,
        "lastTransitionTime": "2026-12-05T10:00:00Z",
    }


def kueue_workload(fake, name: str, job: dict, priority: int, message: str = "") -> None:
    """What Kueue's controller makes for a job it manages (the fake plays Kueue)."""
    conditions = [condition("QuotaReserved", "False", message)] if message else []
    fake.objects[("workloads", "team-a", name)] = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "creationTimestamp": job["metadata"]["creationTimestamp"],
            "ownerReferences": [{"kind": job["kind"], "uid": job["metadata"]["uid"]}],
        },
        "spec": {"priority": priority},
        "status": {"conditions": conditions},
    }


def test_with_kueue_jobs_wait_suspended_in_their_users_queue(kueue_cluster):
    from tests.unit.test_kueue_objects import schemas

    fake, backend, mode = kueue_cluster
    kind = "TFJob" if mode == "tfjob" else "Job"
    plural = "tfjobs" if mode == "tfjob" else "jobs"
    batch = JobSpec(name="nightly", gpus_per_worker=1, priority="batch")
    first = backend.submit("alice", batch, "print(1)\n", job_id="nightly-1")
    assert first["state"] == "queued"
    backend.submit("alice", SPEC, "print(2)\n", job_id="mnist-2")  # her queue exists: reused
    urgent = JobSpec(name="urgent", gpus_per_worker=1, priority="interactive")
    backend.submit("bob", urgent, "print(3)\n", job_id="urgent-3")

    # one LocalQueue per user, valid for Kueue v0.19.2; jobs labelled and suspended
    queues = fake.of_kind("localqueues")
    assert sorted(q["metadata"]["annotations"]["hubforge.io/user"] for q in queues) == [
        "alice",
        "bob",
    ]
    kinds = schemas()
    for q in queues:
        jsonschema.validate(q, kinds["LocalQueue"])
    job = fake.objects[(plural, "team-a", "hf-nightly-1")]
    assert job["metadata"]["labels"][QUEUE_LABEL] == local_queue_name("alice")
    assert job["metadata"]["labels"][PRIORITY_LABEL] == "hubforge-batch"
    assert (job["spec"]["runPolicy"] if mode == "tfjob" else job["spec"])["suspend"] is True

    # Kueue made the Workloads; the higher priority waits first, each says why
    message = (
        "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu"
    )
    for job_id, priority in (("nightly-1", 100), ("mnist-2", 200), ("urgent-3", 300)):
        obj = fake.objects[(plural, "team-a", f"hf-{job_id}")]
        kueue_workload(fake, f"{kind.lower()}-hf-{job_id}", obj, priority, message)
    record = backend.get("alice", "nightly-1")
    assert record["state"] == "queued"
    assert record["queue"] == {"position": 3, "reason": f"waiting in Kueue's queue: {message}"}
    assert backend.get("bob", "urgent-3")["queue"]["position"] == 1
    listed = {r["id"]: r["state"] for r in backend.list("alice")}
    assert listed == {"nightly-1": "queued", "mnist-2": "queued"}
    with pytest.raises(jobs.JobNotFound):
        backend.get("bob", "nightly-1")  # another user's place in the queue is not his to see

    # Kueue admits bob's: unsuspended, running
    obj = fake.objects[(plural, "team-a", "hf-urgent-3")]
    if mode == "tfjob":
        obj["spec"]["runPolicy"]["suspend"] = False
    else:
        obj["spec"]["suspend"] = False
    obj["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    assert backend.get("bob", "urgent-3")["state"] == "running"
    assert "queue" not in backend.get("bob", "urgent-3")
    with pytest.raises(jobs.JobError, match="no priority class 'urgent'"):
        backend.submit("bob", JobSpec(name="x", priority="urgent"), "print(4)\n", job_id="x-4")


def kueue_podsets(job: dict) -> list[dict]:
    """The pod sets Kueue's Workload copies from a job (its pod templates and counts)."""
    if job["kind"] == "Job":
        return [
            {
                "name": "main",
                "count": job["spec"]["parallelism"],
                "template": job["spec"]["template"],
            }
        ]
    return [
        {"name": role.lower(), "count": spec["replicas"], "template": spec["template"]}
        for role, spec in job["spec"]["tfReplicaSpecs"].items()
    ]


def test_idle_gpu_servers_give_way_to_the_gpus_kueues_waiting_jobs_ask_for(kueue_cluster):
    """GPU-aware culling on Kubernetes: the GPUs wanted are those of Kueue's pending
    Workloads (pod count x GPUs per pod), read by the culler off the event loop."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from hubforge.service.culler import IdleCuller
    from tests.unit.test_culler import PROFILES
    from tests.unit.test_kueue_objects import schemas

    fake, backend, mode = kueue_cluster
    plural = "tfjobs" if mode == "tfjob" else "jobs"
    assert backend.gpus_waiting() == 0
    backend.submit("alice", SPEC, "print(1)\n", job_id="big-1")  # 2 workers x 1 GPU
    backend.submit("bob", JobSpec(name="one", gpus_per_worker=1), "print(2)\n", job_id="one-2")
    backend.submit("bob", JobSpec(name="cpu"), "print(3)\n", job_id="cpu-3")  # no GPU
    kinds = schemas()
    for job_id, priority in (("big-1", 200), ("one-2", 200), ("cpu-3", 200)):
        job = fake.objects[(plural, "team-a", f"hf-{job_id}")]
        kueue_workload(fake, f"w-{job_id}", job, priority, "insufficient unused quota")
        workload = fake.objects[("workloads", "team-a", f"w-{job_id}")]
        workload["spec"]["podSets"] = kueue_podsets(job)
        jsonschema.validate(workload, kinds["Workload"])
    assert backend.gpus_waiting() == 3
    admitted = fake.objects[("workloads", "team-a", "w-one-2")]
    admitted["status"]["conditions"] = [condition("QuotaReserved", "True")]
    assert backend.gpus_waiting() == 2

    culler = IdleCuller(
        PROFILES, cpu_timeout=3600, gpu_timeout=1800, queued_timeout=600,
        gpus_wanted=lambda: asyncio.to_thread(backend.gpus_waiting),
    )  # fmt: skip
    stopped = []

    def server(name: str, profile: str, idle_s: int) -> dict:
        seen = (datetime.now(UTC) - timedelta(seconds=idle_s)).isoformat()
        model = {"ready": True, "pending": None, "last_activity": seen, "started": seen}
        return {"name": name, "servers": {"": {**model, "user_options": {"profile": profile}}}}

    async def users():
        return [server("g", "gpu-1", 700), server("c", "cpu", 700), server("r", "gpu-1", 60)]

    async def hub(method, path):
        stopped.append((method, path))

    culler.users, culler._hub = users, hub
    asyncio.run(culler.cull())
    assert stopped == [("DELETE", "/users/g/server")]  # idle 700 s > 600 s: GPUs wanted
    for name in ("w-big-1", "w-cpu-3"):  # nothing waits for GPUs: the usual 30 min
        fake.objects[("workloads", "team-a", name)]["status"]["conditions"] = [
            condition("Admitted", "True")
        ]
    stopped.clear()
    asyncio.run(culler.cull())
    assert stopped == []
