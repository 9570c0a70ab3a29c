"""Pure builders of Kueue's queue objects and of what Hubforge puts on the jobs Kueue admits
(issue #33; dicts in, dicts out, no I/O; ``kueue.x-k8s.io/v1beta2``, Kueue v0.19).

Kueue is a cluster add-on its admins install; Hubforge makes only the queue objects: one
ResourceFlavor per GPU type the profiles name, one ClusterQueue with the team's quotas, a
LocalQueue per user in the workload namespace (so Kueue's admission fair sharing weighs users
against each other), a WorkloadPriorityClass per priority class. A job is labelled for its
user's queue and priority and created suspended: Kueue unsuspends it when it is admitted. An
endpoint's Deployment (or KServe predictor) is labelled the same way: Kueue's deployment (pod)
integration holds each serving pod at its admission scheduling gate until the quota allows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..podspec import GPU_RESOURCE
from .fairshare import DEFAULT_CLASSES, PriorityClass

API = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
MANAGED = {"app.kubernetes.io/managed-by": "hubforge"}


@dataclass
class Flavor:
    """A kind of node (a GPU type): the labels that select it, the taints its pods tolerate,
    and the GPUs of that kind the team may use at once."""

    name: str
    gpus: int
    node_labels: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class QueueSettings:
    """The team's queue; filled from the chart's values (``hubforge.queue.kueue``)."""

    cluster_queue: str = "hubforge"
    namespace: str = "hubforge"  # where jobs and endpoints run
    flavors: list[Flavor] = field(default_factory=lambda: [Flavor("default", 0)])
    cpu: str = "64"
    memory: str = "256Gi"
    classes: tuple[PriorityClass, ...] = DEFAULT_CLASSES
    preemption: bool = True  # higher classes may preempt lower ones within the queue


def local_queue_name(user: str) -> str:
    """A DNS label for ``user``'s LocalQueue: readable, and distinct for names that differ
    only in characters a label cannot hold (a hash of the name is appended)."""
    readable = re.sub(r"[^a-z0-9-]+", "-", user.lower()).strip("-")[:40] or "user"
    digest = hashlib.sha256(user.encode()).hexdigest()[:8]
    return f"hubforge-{readable}-{digest}"


def resource_flavor(flavor: Flavor) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if flavor.node_labels:
        spec["nodeLabels"] = dict(flavor.node_labels)
    if flavor.tolerations:
        spec["tolerations"] = [dict(t) for t in flavor.tolerations]
    return {
        "apiVersion": API,
        "kind": "ResourceFlavor",
        "metadata": {"name": flavor.name, "labels": dict(MANAGED)},
        "spec": spec,
    }


def cluster_queue(s: QueueSettings) -> dict[str, Any]:
    """The team's quotas: CPU, memory and GPUs per flavor; BestEffortFIFO (a job that does not
    fit does not hold up smaller ones Kueue can admit), admission fair sharing between users'
    queues, preemption of lower priority work."""
    flavors = [
        {
            "name": f.name,
            "resources": [
                {"name": "cpu", "nominalQuota": s.cpu},
                {"name": "memory", "nominalQuota": s.memory},
                {"name": GPU_RESOURCE, "nominalQuota": f.gpus},
            ],
        }
        for f in s.flavors
    ]
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.namespace}},
        "queueingStrategy": "BestEffortFIFO",
        # users' LocalQueues are weighed by their recent usage (Kueue's admission fair
        # sharing): one user's ten jobs do not starve a teammate's one
        "admissionScope": {"admissionMode": "UsageBasedAdmissionFairSharing"},
        "resourceGroups": [
            {"coveredResources": ["cpu", "memory", GPU_RESOURCE], "flavors": flavors}
        ],
    }
    if s.preemption:
        spec["preemption"] = {"withinClusterQueue": "LowerPriority"}
    return {
        "apiVersion": API,
        "kind": "ClusterQueue",
        "metadata": {"name": s.cluster_queue, "labels": dict(MANAGED)},
        "spec": spec,
    }


def local_queue(s: QueueSettings, user: str) -> dict[str, Any]:
    """``user``'s LocalQueue in the workload namespace, feeding the team's ClusterQueue."""
    return {
        "apiVersion": API,
        "kind": "LocalQueue",
        "metadata": {
            "name": local_queue_name(user),
            "namespace": s.namespace,
            "labels": {**MANAGED, "hubforge.io/owner": local_queue_name(user)},
            "annotations": {"hubforge.io/user": user},
        },
        "spec": {"clusterQueue": s.cluster_queue, "fairSharing": {"weight": "1"}},
    }


def priority_classes(s: QueueSettings) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": f"hubforge-{c.name}", "labels": dict(MANAGED)},
            "value": c.value,
            "description": f"Hubforge priority class {c.name}"
            + (" (may be preempted)" if c.preemptible else ""),
        }
        for c in s.classes
    ]


def queue_objects(s: QueueSettings, users: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Everything the chart (and the service, for a new user) creates."""
    return [
        *(resource_flavor(f) for f in s.flavors),
        cluster_queue(s),
        *priority_classes(s),
        *(local_queue(s, u) for u in users),
    ]


def queue_labels(s: QueueSettings, user: str, priority: str) -> dict[str, str]:
    """The labels that put a job into ``user``'s queue with ``priority`` (a class name)."""
    names = {c.name for c in s.classes}
    if priority not in names:
        raise ValueError(f"no priority class {priority!r}: use one of {', '.join(sorted(names))}")
    return {QUEUE_LABEL: local_queue_name(user), PRIORITY_LABEL: f"hubforge-{priority}"}


def queued(obj: dict[str, Any], s: QueueSettings, user: str, priority: str) -> dict[str, Any]:
    """A batch Job or a TFJob for Kueue: its queue labels, and created suspended."""
    labelled = {**obj, "metadata": dict(obj.get("metadata") or {})}
    labelled["metadata"]["labels"] = {
        **(labelled["metadata"].get("labels") or {}),
        **queue_labels(s, user, priority),
    }
    spec = dict(obj.get("spec") or {})
    if obj.get("kind") == "TFJob":
        spec["runPolicy"] = {**(spec.get("runPolicy") or {}), "suspend": True}
    elif obj.get("kind") == "Job":
        spec["suspend"] = True
    else:
        raise ValueError(f"Kueue admits Jobs and TFJobs here, not {obj.get('kind')!r}")
    labelled["spec"] = spec
    return labelled


ADMISSION_GATE = "kueue.x-k8s.io/admission"  # the scheduling gate Kueue puts on pods it holds


def serving_class(s: QueueSettings) -> str:
    """The class endpoints run at: the highest one every user may use (what others call
    should not wait behind, or be preempted by, everyday jobs)."""
    open_to_all = [c for c in s.classes if c.users is None] or list(s.classes)
    return max(open_to_all, key=lambda c: c.value).name


def queued_endpoint(obj: dict[str, Any], s: QueueSettings, user: str) -> dict[str, Any]:
    """An endpoint's Deployment or InferenceService for Kueue: its queue labels (Kueue's
    webhook gates its pods until they are admitted; a Deployment cannot be suspended)."""
    queue = queue_labels(s, user, serving_class(s))
    labelled = {**obj, "metadata": dict(obj.get("metadata") or {})}
    labelled["metadata"]["labels"] = {**(labelled["metadata"].get("labels") or {}), **queue}
    if obj.get("kind") == "InferenceService":  # KServe puts the predictor's labels on its pods
        spec = dict(obj.get("spec") or {})
        predictor = dict(spec.get("predictor") or {})
        predictor["labels"] = {**(predictor.get("labels") or {}), **queue}
        spec["predictor"] = predictor
        labelled["spec"] = spec
    elif obj.get("kind") != "Deployment":
        raise ValueError(
            f"Kueue holds Deployments and InferenceServices here, not {obj.get('kind')!r}"
        )
    return labelled


def local_queue_path(namespace: str) -> str:
    return f"/apis/{API}/namespaces/{namespace}/localqueues"


def workloads_path(namespace: str) -> str:
    return f"/apis/{API}/namespaces/{namespace}/workloads"


def workload_pending(workload: dict[str, Any]) -> bool:
    """A Kueue Workload that waits: no quota reserved, not finished."""
    true = {
        c["type"]
        for c in workload.get("status", {}).get("conditions", [])
        if c.get("status") == "True"
    }
    return not true & {"QuotaReserved", "Admitted", "Finished"}


def workload_reason(workload: dict[str, Any]) -> str:
    """Why Kueue has not admitted it, in Kueue's words (e.g. "couldn't assign flavors to
    pod set main: insufficient unused quota for nvidia.com/gpu in flavor default, 1 more
    needed")."""
    for condition in workload.get("status", {}).get("conditions", []):
        if condition.get("type") == "QuotaReserved" and condition.get("message"):
            return f"waiting in Kueue's queue: {condition['message']}"
    return "waiting in Kueue's queue"


def queue_place(workloads: list[dict[str, Any]], owners: set[Any]) -> dict[str, Any] | None:
    """Where Kueue has the object whose uid is in ``owners`` (a job, or an endpoint's pods):
    its Workload's position among the pending ones (Kueue's order: priority, then age) and
    why it waits; None when none of them has a pending Workload."""
    pending = sorted(
        (w for w in workloads if workload_pending(w)),
        key=lambda w: (
            -(w.get("spec", {}).get("priority") or 0),
            w.get("metadata", {}).get("creationTimestamp") or "",
        ),
    )
    for position, workload in enumerate(pending, start=1):
        refs = workload["metadata"].get("ownerReferences") or []
        if any(r.get("uid") in owners for r in refs):
            return {"position": position, "reason": workload_reason(workload)}
    return None


def _gpus_of(container: dict[str, Any]) -> int:
    resources = container.get("resources") or {}
    asked = (resources.get("limits") or {}).get(GPU_RESOURCE) or (
        resources.get("requests") or {}
    ).get(GPU_RESOURCE)
    try:
        return max(int(asked or 0), 0)
    except (TypeError, ValueError):
        return 0


def gpus_requested(workload: dict[str, Any]) -> int:
    """The GPUs a Kueue Workload asks for: per pod set, its pods' count times what one pod
    needs (its containers together, or its largest init container, whichever is more)."""
    total = 0
    for pod_set in workload.get("spec", {}).get("podSets") or []:
        pod = pod_set.get("template", {}).get("spec", {})
        running = sum(_gpus_of(c) for c in pod.get("containers") or [])
        init = max((_gpus_of(c) for c in pod.get("initContainers") or []), default=0)
        total += int(pod_set.get("count") or 0) * max(running, init)
    return total


def gpus_waiting(workloads: list[dict[str, Any]]) -> int:
    """GPUs the pending Workloads ask for (the GPU-aware idle culler frees idle GPU servers'
    GPUs for them)."""
    return sum(gpus_requested(w) for w in workloads if workload_pending(w))
