"""Kubernetes endpoints: TF Serving objects from the builders, sent with kubernetes_asyncio.

Runs inside the hubforge service (the only component with Kubernetes credentials). The model
versions are copied on the HDFS mount the service shares with the serving pods; a redeploy
updates the objects in place (the Deployment rolls with no unavailable pod).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets import Dict, Enum, Integer, List, Unicode

from ..jobs.kueue import (
    ADMISSION_GATE,
    local_queue,
    local_queue_path,
    queue_place,
    workloads_path,
)
from ..kube import KubeAPI, incluster_configuration
from ..podspec import DATA_MOUNT, KubernetesWorkloads, gpu_tolerations
from .base import EndpointBackend, check_batching
from .errors import BadRequest, NotFound, ServingError
from .model import find_versions
from .objects import REST_PORT, ServingSettings, endpoint_objects, object_name
from .repository import ModelRepository

KSERVE_CRD = "inferenceservices.serving.kserve.io"
BATCHING = "hubforge.io/batching"
GPUS = "hubforge.io/gpus"


class KubernetesEndpoints(KubernetesWorkloads):
    """Cluster settings of the Kubernetes endpoint backend (set by the Helm chart)."""

    image = Unicode("tensorflow/serving:2.19.0", config=True, help="TF Serving image (CPU).")
    gpu_image = Unicode(
        "tensorflow/serving:2.19.0-gpu", config=True, help="TF Serving image for GPU endpoints."
    )
    server = Enum(
        ["tensorflow-serving", "hubforge"],
        "tensorflow-serving",
        config=True,
        help="What runs endpoints: TF Serving (image, gpu_image) or Hubforge's model server "
        "(hubforge_image, hubforge_gpu_image: TF Serving's API and flags plus the Open "
        "Inference Protocol, as local endpoints).",
    )
    hubforge_image = Unicode(
        "hubforge/singleuser:0.1.0", config=True, help="Image with hubforge-model-server (CPU)."
    )
    hubforge_gpu_image = Unicode(
        "hubforge/singleuser-cuda:0.1.0",
        config=True,
        help="Image with hubforge-model-server for GPU endpoints.",
    )
    gpu_node_selector = Dict(config=True, help="Extra nodeSelector of GPU serving pods.")
    gpu_tolerations = List(
        gpu_tolerations(),
        config=True,
        help="Tolerations of GPU serving pods.",
    )
    cpu = Unicode("1", config=True, help="CPU request of a serving pod.")
    memory = Unicode("2Gi", config=True, help="Memory request and limit of a serving pod.")
    max_gpus = Integer(1, config=True, help="Most GPUs one endpoint may ask for.")

    def settings(self) -> ServingSettings:
        return ServingSettings(
            namespace=self.namespace,
            image=self.hubforge_image if self.server == "hubforge" else self.image,
            gpu_image=self.hubforge_gpu_image if self.server == "hubforge" else self.gpu_image,
            server=self.server,
            hdfs_volume=dict(self.hdfs_volume),
            node_selector=dict(self.node_selector),
            gpu_node_selector=dict(self.gpu_node_selector),
            gpu_tolerations=[dict(t) for t in self.gpu_tolerations],
            cpu=self.cpu,
            memory=self.memory,
        )


class KubernetesEndpointBackend(EndpointBackend):
    def __init__(
        self,
        configuration: client.Configuration,
        settings: ServingSettings,
        data_root: str | Path = DATA_MOUNT,
        max_gpus: int = 1,
    ):
        self.settings = settings
        self.data_root = Path(data_root)
        self.max_gpus = max_gpus
        self.kube = KubeAPI(configuration, "k8s-endpoints")

    @classmethod
    def from_workbench(cls, workbench: Any) -> KubernetesEndpointBackend:
        from ..jobs.kubernetes import KubernetesJobs

        config = KubernetesEndpoints(config=workbench.config)
        settings = config.settings()
        # one switch for both: with Kueue (hubforge.queue.kueue) endpoints queue like jobs
        settings.queue = KubernetesJobs.settings_of(workbench).queue
        return cls(incluster_configuration(), settings, workbench.shared_data, config.max_gpus)

    def close(self) -> None:
        self.kube.close()

    def _run(self, coro: Any) -> Any:
        try:
            return self.kube.run(coro)
        except ApiException as e:
            raise ServingError(f"Kubernetes answered {e.status}: {e.reason}") from None

    def _path(self, kind: str, name: str | None = None) -> str:
        ns = self.settings.namespace
        base = {
            "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
            "Service": f"/api/v1/namespaces/{ns}/services",
            "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
            "InferenceService": (
                f"/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
            ),
        }[kind]
        return f"{base}/{name}" if name else base

    async def _main_kind(self) -> str:
        return "InferenceService" if await self.kube.crd_exists(KSERVE_CRD) else "Deployment"

    # -- EndpointBackend ----------------------------------------------------------------
    def deploy(
        self,
        owner: str,
        name: str,
        model_dir: str,
        version: int | None = None,
        batching: dict[str, Any] | None = None,
        gpus: int = 0,
    ) -> dict[str, Any]:
        if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= self.max_gpus:
            raise BadRequest(f"gpus={gpus!r}: from 0 to {self.max_gpus} per endpoint here")
        settings = check_batching(batching) if batching is not None else None
        base, _ = self.add_version(owner, name, model_dir, version)
        return self._run(self._deploy(owner, name, base, settings, gpus))

    async def _deploy(
        self, owner: str, name: str, base: Path, batching: dict | None, gpus: int
    ) -> dict[str, Any]:
        kind = await self._main_kind()
        previous = await self._find(kind, owner, name)
        if batching is None:
            annotations = previous["metadata"].get("annotations", {}) if previous else {}
            batching = check_batching(json.loads(annotations.get(BATCHING, "null")))
        objects = endpoint_objects(
            owner,
            name,
            sorted(find_versions(base)),
            ModelRepository(name, base).read_labels(),
            gpus,
            batching,
            self.settings,
            kserve=kind == "InferenceService",
        )
        main = next(o for o in objects if o["kind"] == kind)
        main["metadata"].setdefault("annotations", {}).update(
            {BATCHING: json.dumps(batching), GPUS: str(gpus)}
        )
        if self.settings.queue is not None:
            await self._ensure_local_queue(owner)
        try:
            for obj in objects:
                path = self._path(obj["kind"], obj["metadata"]["name"])
                try:
                    await self.kube.call("PUT", path, obj)
                except ApiException as e:
                    if e.status != 404:
                        raise
                    await self.kube.call("POST", self._path(obj["kind"]), obj)
        except ApiException as e:
            raise ServingError(
                f"Kubernetes refused the endpoint: {e.reason} ({e.status})"
            ) from None
        return await self._get(owner, name)

    async def _ensure_local_queue(self, owner: str) -> None:
        """The owner's LocalQueue (the same one their jobs use; 409: it exists)."""
        queue = self.settings.queue
        try:
            await self.kube.call(
                "POST", local_queue_path(queue.namespace), local_queue(queue, owner)
            )
        except ApiException as e:
            if e.status != 409:
                raise ServingError(
                    f"Kueue's LocalQueue for {owner} could not be made: {e.reason} ({e.status})"
                    "; is Kueue installed (hubforge.queue.kueue in the chart)?"
                ) from None

    async def _find(self, kind: str, owner: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self.kube.call("GET", self._path(kind, object_name(owner, name)))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        if obj["metadata"].get("labels", {}).get("hubforge.io/owner") != owner:
            return None
        return obj

    def _record(self, owner: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        name = meta["labels"]["hubforge.io/endpoint"]
        base = self.area(owner) / "models" / name
        annotations = meta.get("annotations", {})
        status = obj.get("status", {})
        if obj["kind"] == "Deployment":
            running = status.get("readyReplicas", 0) >= 1
        else:
            running = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", [])
            )
        return {
            "owner": owner,
            "name": name,
            "base_path": str(base),
            "versions": sorted(find_versions(base)),
            "running": running,
            "created": meta.get("creationTimestamp"),
            "batching": check_batching(json.loads(annotations.get(BATCHING, "null"))),
            "gpus": int(annotations.get(GPUS, "0")),
            "kind": obj["kind"],
            "object": meta["name"],
            "address": status.get("address", {}).get("url"),
        }

    def get(self, owner: str, name: str) -> dict[str, Any]:
        return self._run(self._get(owner, name))

    async def _get(self, owner: str, name: str) -> dict[str, Any]:
        obj = await self._find(await self._main_kind(), owner, name)
        if obj is None:
            raise NotFound(f"No endpoint {name!r} for {owner}; `hubforge serve list` shows yours")
        return (await self._with_queue(owner, [self._record(owner, obj)]))[0]

    async def _with_queue(self, owner: str, records: list[dict[str, Any]]) -> list[dict]:
        """With Kueue: each endpoint that is not up and whose pods Kueue holds at its
        admission gate gets ``queue`` (its Workload's place among the pending ones and
        Kueue's reason). Two API reads for all of them."""
        waiting = [r for r in records if not r["running"]]
        if self.settings.queue is None or not waiting:
            return records
        ns = self.settings.namespace
        pods = await self.kube.call(
            "GET",
            f"/api/v1/namespaces/{ns}/pods",
            query=[("labelSelector", f"hubforge.io/owner={owner}")],
        )
        held: dict[str, set[Any]] = {}
        for pod in pods.get("items", []):
            gates = pod.get("spec", {}).get("schedulingGates") or []
            if any(g.get("name") == ADMISSION_GATE for g in gates):
                endpoint = pod["metadata"].get("labels", {}).get("hubforge.io/endpoint")
                held.setdefault(endpoint, set()).add(pod["metadata"].get("uid"))
        if not held:
            return records
        workloads = (await self.kube.call("GET", workloads_path(ns))).get("items", [])
        for record in waiting:
            if record["name"] in held:
                place = queue_place(workloads, held[record["name"]])
                record["queue"] = place or {"position": None, "reason": "waiting in Kueue's queue"}
        return records

    def list(self, owner: str) -> list[dict[str, Any]]:
        return self._run(self._list(owner))

    async def _list(self, owner: str) -> list[dict[str, Any]]:
        found = await self.kube.call(
            "GET",
            self._path(await self._main_kind()),
            query=[("labelSelector", f"hubforge.io/owner={owner}")],
        )
        return await self._with_queue(
            owner, [self._record(owner, obj) for obj in found.get("items", [])]
        )

    def undeploy(self, owner: str, name: str) -> dict[str, Any]:
        return self._run(self._undeploy(owner, name))

    async def _undeploy(self, owner: str, name: str) -> dict[str, Any]:
        record = await self._get(owner, name)
        kinds = [record["kind"], "ConfigMap"]
        if record["kind"] == "Deployment":
            kinds.insert(1, "Service")
        for kind in kinds:
            await self.kube.delete(self._path(kind, record["object"]))
        return {**record, "running": False}

    def target(self, owner: str, name: str) -> str:
        record = self.get(owner, name)
        if record["kind"] == "InferenceService":
            return record["address"] or (
                f"http://{record['object']}-predictor.{self.settings.namespace}.svc.cluster.local"
            )
        return f"http://{record['object']}.{self.settings.namespace}.svc:{REST_PORT}"
