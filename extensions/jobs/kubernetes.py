"""Kubernetes backend: sends the builders' objects with kubernetes_asyncio, reads state back.

Runs inside the hubforge service (the only component with Kubernetes credentials). Each job
is a TFJob when the Training Operator's CRD exists, else an Indexed Job + headless Service.
Progress records are read from the job's folder on the HDFS mount, like the local backend.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets import Bool, Unicode

from ..kube import KubeAPI, incluster_configuration
from ..podspec import DATA_MOUNT, KubernetesWorkloads
from .base import LOG_PAGE, JobBackend, whole_characters
from .errors import JobError, JobNotFound
from .fairshare import DEFAULT_CLASSES, PriorityClass, classes_from_config
from .kueue import API as KUEUE_API
from .kueue import QueueSettings, gpus_waiting, local_queue, queue_place, queued
from .local import new_job_id
from .objects import ClusterSettings, job_dir, job_objects, object_name
from .spec import JobSpec
from .store import TERMINAL, JobStore, summarize_progress

SPEC_ANNOTATION = "hubforge.io/spec"


class KubernetesJobs(KubernetesWorkloads):
    """Cluster settings of the Kubernetes job backend (set by the Helm chart)."""

    image = Unicode("hubforge/singleuser:latest", config=True, help="Image of job workers.")
    service_account = Unicode(
        "hubforge-job", config=True, help="ServiceAccount of job pods (its token is not mounted)."
    )
    kueue = Bool(
        False,
        config=True,
        help="Queue jobs with Kueue (installed in the cluster): each is labelled for its "
        "user's LocalQueue (made on first use) and created suspended; Kueue admits it.",
    )
    kueue_cluster_queue = Unicode(
        "hubforge", config=True, help="The team's ClusterQueue (the chart makes it)."
    )

    @classmethod
    def settings_of(cls, workbench: Any) -> ClusterSettings:
        """The cluster settings of ``workbench`` (its config and its priority classes)."""
        classes = classes_from_config(workbench.priority_classes)
        return cls(config=workbench.config).cluster_settings(classes)

    def cluster_settings(
        self, classes: tuple[PriorityClass, ...] = DEFAULT_CLASSES
    ) -> ClusterSettings:
        """``classes``: the workbench's priority classes (Kueue's WorkloadPriorityClasses
        ``hubforge-<name>``, which the chart makes from the same list)."""
        queue = None
        if self.kueue:
            queue = QueueSettings(
                cluster_queue=self.kueue_cluster_queue, namespace=self.namespace, classes=classes
            )
        return ClusterSettings(
            namespace=self.namespace,
            image=self.image,
            service_account=self.service_account,
            hdfs_volume=dict(self.hdfs_volume),
            node_selector=dict(self.node_selector),
            queue=queue,
        )


class KubernetesJobBackend(JobBackend):
    local_devices = False  # the scheduler places GPU workers by their nvidia.com/gpu limits

    def __init__(
        self,
        configuration: client.Configuration,
        settings: ClusterSettings,
        data_root: str | Path = DATA_MOUNT,
    ):
        """``configuration``: where the API server is and how to authenticate (in the
        service: the pod's ServiceAccount, see ``hubforge.kube.incluster_configuration``)."""
        self.settings = settings
        self.data_root = Path(data_root)
        self.kube = KubeAPI(configuration, "k8s-jobs")
        self._run = self.kube.run
        self._call = self.kube.call

    @classmethod
    def from_workbench(cls, workbench: Any) -> KubernetesJobBackend:
        settings = KubernetesJobs.settings_of(workbench)
        return cls(incluster_configuration(), settings, workbench.shared_data)

    def close(self) -> None:
        self.kube.close()

    def _ns(self) -> str:
        return self.settings.namespace

    # -- discovery ------------------------------------------------------------------------
    async def _tfjob_available(self) -> bool:
        return await self.kube.crd_exists("tfjobs.kubeflow.org")

    def _path(self, kind: str, name: str | None = None) -> str:
        ns = self._ns()
        base = {
            "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
            "Service": f"/api/v1/namespaces/{ns}/services",
            "Pod": f"/api/v1/namespaces/{ns}/pods",
            "Job": f"/apis/batch/v1/namespaces/{ns}/jobs",
            "TFJob": f"/apis/kubeflow.org/v1/namespaces/{ns}/tfjobs",
            "NetworkPolicy": f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
            "LocalQueue": f"/apis/{KUEUE_API}/namespaces/{ns}/localqueues",
            "Workload": f"/apis/{KUEUE_API}/namespaces/{ns}/workloads",
        }[kind]
        return f"{base}/{name}" if name else base

    # -- JobBackend -----------------------------------------------------------------------
    def submit(
        self,
        owner: str,
        spec: JobSpec,
        script: str,
        job_id: str | None = None,
        queued: bool = False,
    ) -> dict[str, Any]:
        spec.validate()
        return self._run(self._submit(owner, spec, script, job_id or new_job_id(spec.name)))

    async def _submit(self, owner: str, spec: JobSpec, script: str, job_id: str) -> dict:
        objs = job_objects(
            owner, job_id, spec, script, self.settings, await self._tfjob_available()
        )
        queue = self.settings.queue
        if queue is not None:  # Kueue admits it: the user's queue, suspended until then
            try:
                objs[-1] = queued(objs[-1], queue, owner, spec.priority)
            except ValueError as e:  # a priority class the queue does not have
                raise JobError(str(e)) from None
            await self._ensure_local_queue(queue, owner)
        main = objs[-1]
        main["metadata"]["annotations"] = {SPEC_ANNOTATION: json.dumps(spec.to_dict())}
        created = []
        try:
            for obj in objs:
                await self._call("POST", self._path(obj["kind"]), obj)
                created.append(obj)
        except ApiException as e:
            for obj in reversed(created):  # leave nothing half-made behind
                await self._delete(obj["kind"], obj["metadata"]["name"])
            raise JobError(f"Kubernetes refused the job: {e.reason} ({e.status})") from None
        return await self._get(owner, job_id)

    async def _ensure_local_queue(self, queue: QueueSettings, owner: str) -> None:
        """The user's LocalQueue, made on their first job (409: it exists)."""
        try:
            await self._call("POST", self._path("LocalQueue"), local_queue(queue, owner))
        except ApiException as e:
            if e.status != 409:
                raise JobError(
                    f"Kueue's LocalQueue for {owner} could not be made: {e.reason} ({e.status})"
                    "; is Kueue installed (hubforge.queue.kueue in the chart)?"
                ) from None

    async def _main_object(self, owner: str, job_id: str) -> dict[str, Any]:
        kind = "TFJob" if await self._tfjob_available() else "Job"
        try:
            obj = await self._call("GET", self._path(kind, object_name(job_id)))
        except ApiException as e:
            if e.status == 404:
                raise JobNotFound(f"No job {job_id!r} for {owner}") from None
            raise
        if obj["metadata"].get("labels", {}).get("hubforge.io/owner") != owner:
            raise JobNotFound(f"No job {job_id!r} for {owner}")
        return obj

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._run(self._get(owner, job_id))

    async def _get(self, owner: str, job_id: str) -> dict[str, Any]:
        obj = await self._main_object(owner, job_id)
        record = self._record(owner, obj, await self._pods(job_id))
        if record["state"] == "queued" and self.settings.queue is not None:
            place = await self._queue_place(obj)
            if place is not None:
                record.update(queue=place, reason=place["reason"])
        return record

    async def _queue_place(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Where Kueue has the job: its Workload's position among the namespace's pending
        ones (Kueue's order: priority, then age) and why it waits (its QuotaReserved
        condition's message); None before Kueue made the Workload."""
        found = await self._call("GET", self._path("Workload"))
        return queue_place(found.get("items", []), {obj["metadata"].get("uid")})

    async def _pods(self, job_id: str) -> list[dict[str, Any]]:
        pods = await self._call(
            "GET", self._path("Pod"), query=[("labelSelector", f"hubforge.io/job={job_id}")]
        )
        return pods.get("items", [])

    def _record(self, owner: str, obj: dict[str, Any], pods: list[dict]) -> dict[str, Any]:
        meta = obj["metadata"]
        job_id = meta["labels"]["hubforge.io/job"]
        spec = json.loads(meta.get("annotations", {}).get(SPEC_ANNOTATION, "{}"))
        state, reason = job_state(obj)
        replicas = {}
        for pod in pods:
            index = replica_index(pod)
            if index is not None:
                replicas[f"worker-{index}"] = {
                    "state": pod.get("status", {}).get("phase", "Pending").lower(),
                    "pid": None,
                    "exit_code": exit_code(pod),
                    "pod": pod["metadata"]["name"],
                }
        folder = self.data_root / "users" / owner / "jobs" / job_id
        return {
            "id": job_id,
            "owner": owner,
            "spec": spec,
            "state": state,
            "reason": reason,
            "restarts": restarts(obj),
            "replicas": replicas,
            "backend": "kubernetes",
            "created": _timestamp(meta.get("creationTimestamp")),
            "supervisor": None,
            "artifacts": {
                "job_dir": job_dir(owner, job_id),
                "model_dir": str(folder / "model"),
                "log_dir": str(folder / "logs"),
                "script": f"configmap/{object_name(job_id)}",
                # the chief writes them to the shared data area, which this service mounts too
                "figures": JobStore(folder).figures(),
                "executed_notebook": JobStore(folder).executed_notebook(),
            },
        }

    def gpus_waiting(self) -> int:
        """GPUs the jobs and endpoints Kueue has not admitted yet ask for (0 without Kueue):
        the idle culler stops idle GPU notebook servers sooner while work waits for them."""
        if self.settings.queue is None:
            return 0
        return self._run(self._gpus_waiting())

    async def _gpus_waiting(self) -> int:
        found = await self._call("GET", self._path("Workload"))
        return gpus_waiting(found.get("items", []))

    def list(self, owner: str) -> list[dict[str, Any]]:
        return self._run(self._list(owner))

    async def _list(self, owner: str) -> list[dict[str, Any]]:
        kind = "TFJob" if await self._tfjob_available() else "Job"
        found = await self._call(
            "GET", self._path(kind), query=[("labelSelector", f"hubforge.io/owner={owner}")]
        )
        records = [self._record(owner, obj, []) for obj in found.get("items", [])]
        return sorted(records, key=lambda r: r["created"], reverse=True)

    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._run(self._cancel(owner, job_id))

    async def _cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        record = await self._get(owner, job_id)
        if record["state"] in TERMINAL:
            raise JobError(f"Job {job_id} already {record['state']}; nothing to cancel", 409)
        name = object_name(job_id)
        main = "TFJob" if await self._tfjob_available() else "Job"
        for kind in (main, "Service", "ConfigMap", "NetworkPolicy"):
            await self._delete(kind, name)
        record.update(state="cancelled", reason="cancelled by the user")
        return record

    async def _delete(self, kind: str, name: str) -> None:
        await self.kube.delete(self._path(kind, name))

    def logs(self, owner: str, job_id: str, replica: str, offset: int = 0) -> tuple[str, int]:
        return self._run(self._logs(owner, job_id, replica, offset))

    async def _logs(self, owner: str, job_id: str, replica: str, offset: int) -> tuple[str, int]:
        record = await self._get(owner, job_id)
        if replica not in record["replicas"]:
            choices = ", ".join(sorted(record["replicas"])) or "none yet (pods are starting)"
            raise JobError(f"No replica {replica!r}; this job has {choices}")
        pod = record["replicas"][replica]["pod"]
        text = await self._call("GET", self._path("Pod", pod) + "/log")
        data = str(text).encode()
        page = whole_characters(data[offset : offset + LOG_PAGE], LOG_PAGE)
        return page.decode("utf-8", errors="replace"), offset + len(page)

    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        self.get(owner, job_id)  # ownership check
        folder = self.data_root / "users" / owner / "jobs" / job_id
        return summarize_progress(JobStore(folder).progress_records())


def replica_index(pod: dict[str, Any]) -> int | None:
    labels = pod["metadata"].get("labels", {})
    for key in ("training.kubeflow.org/replica-index", "batch.kubernetes.io/job-completion-index"):
        if key in labels:
            return int(labels[key])
    return None


def exit_code(pod: dict[str, Any]) -> int | None:
    for status in pod.get("status", {}).get("containerStatuses", []):
        terminated = status.get("state", {}).get("terminated")
        if terminated:
            return terminated.get("exitCode")
    return None


def suspended(obj: dict[str, Any]) -> bool:
    spec = obj.get("spec", {})
    if obj.get("kind") == "TFJob":
        return bool(spec.get("runPolicy", {}).get("suspend"))
    return bool(spec.get("suspend"))


def job_state(obj: dict[str, Any]) -> tuple[str, str]:
    """Map TFJob / Job conditions to Hubforge's states (a suspended job that has not ended
    waits in Kueue's queue)."""
    conditions = {
        c["type"]: c
        for c in obj.get("status", {}).get("conditions", [])
        if c.get("status") == "True"
    }
    for kind, state in (
        ("Succeeded", "succeeded"),
        ("Complete", "succeeded"),
        ("Failed", "failed"),
    ):
        if kind in conditions:
            return state, conditions[kind].get("message", "")
    if suspended(obj):  # not admitted yet, or preempted by Kueue (it resumes when admitted)
        return "queued", "waiting in Kueue's queue"
    for kind, state in (("Restarting", "restarting"), ("Running", "running")):
        if kind in conditions:
            return state, conditions[kind].get("message", "")
    if obj.get("status", {}).get("active"):
        return "running", ""
    return "pending", ""


def restarts(obj: dict[str, Any]) -> int:
    status = obj.get("status", {})
    if "failed" in status:  # batch/v1 Job: failed pods were replaced
        return int(status["failed"])
    worker = status.get("replicaStatuses", {}).get("Worker", {})
    return int(worker.get("failed", 0))


def _timestamp(value: str | None) -> float:
    if not value:
        return time.time()
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
