"""Kubernetes endpoints: TF Serving objects from the builders, sent with kubernetes_asyncio.

Runs inside the hubforge service (the only component with Kubernetes credentials). The model
versions are copied on the HDFS mount the service shares with the serving pods; a redeploy
updates the objects in place (the Deployment rolls with no unavailable pod). Replicas: the
HorizontalPodAutoscaler and PodDisruptionBudget come and go with the settings; a redeploy
keeps the scale the HPA reached.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests
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
from .base import EndpointBackend, check_batching, check_replicas
from .errors import BadRequest, NotFound, ServingError
from .model import find_versions
from .objects import (
    REST_PORT,
    ServingSettings,
    autoscales,
    config_map,
    endpoint_objects,
    object_name,
)
from .pinning import StablePin
from .repository import ModelRepository
from .rollout import STABLE_LABEL

KSERVE_CRD = "inferenceservices.serving.kserve.io"
BATCHING = "hubforge.io/batching"
GPUS = "hubforge.io/gpus"
REPLICAS = "hubforge.io/replicas"
# what KServe's autoscaler targets when min < max and no target was named (its own default)
KSERVE_DEFAULT_CPU = 80
# made or deleted as the replica settings call for them (in both modes)
SCALING_KINDS = ("HorizontalPodAutoscaler", "PodDisruptionBudget")


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
    max_gpus = Integer(1, config=True, help="Most GPUs one endpoint may ask for (per copy).")
    max_replicas = Integer(
        8, config=True, help="Most copies of one endpoint (replicas max; the chart's policy too)."
    )
    concurrency_metric = Unicode(
        "hubforge_endpoint_requests_in_flight",
        config=True,
        help="Per-pod custom metric (e.g. from prometheus-adapter) that replicas with "
        "target_concurrency scale on: requests in flight in one serving pod.",
    )

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
            max_replicas=self.max_replicas,
            concurrency_metric=self.concurrency_metric,
        )


class KubernetesEndpointBackend(StablePin, EndpointBackend):
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
        self.max_replicas = settings.max_replicas
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
            "HorizontalPodAutoscaler": (
                f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
            ),
            "PodDisruptionBudget": f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
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
        replicas: dict[str, Any] | int | None = None,
    ) -> dict[str, Any]:
        if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= self.max_gpus:
            raise BadRequest(f"gpus={gpus!r}: from 0 to {self.max_gpus} per endpoint copy here")
        settings = check_batching(batching) if batching is not None else None
        scaling = None
        if replicas is not None:
            scaling = check_replicas(replicas, self.max_replicas)
            if self._run(self._main_kind()) == "InferenceService":  # refused before the copy
                scaling = self._kserve_replicas(scaling, replicas)
        base, _ = self.add_version(owner, name, model_dir, version)
        return self._run(self._deploy(owner, name, base, settings, gpus, scaling))

    def _kserve_replicas(self, scaling: dict[str, Any], asked: Any) -> dict[str, Any]:
        """KServe's RawDeployment autoscaler scales on CPU only: a target_concurrency asked
        for is refused; where none was named (the default) CPU at KServe's 80%."""
        if scaling["target_concurrency"] is None:
            return scaling
        if isinstance(asked, dict) and "target_concurrency" in asked:
            raise BadRequest(
                "replicas.target_concurrency: endpoints here are KServe InferenceServices, "
                "whose autoscaler scales on CPU use only; give replicas.target_cpu "
                f"(percent of the CPU request, e.g. {KSERVE_DEFAULT_CPU}) instead"
            )
        return {**scaling, "target_concurrency": None, "target_cpu": KSERVE_DEFAULT_CPU}

    async def _deploy(
        self,
        owner: str,
        name: str,
        base: Path,
        batching: dict | None,
        gpus: int,
        scaling: dict[str, Any] | None,
    ) -> dict[str, Any]:
        kind = await self._main_kind()
        previous = await self._find(kind, owner, name)
        annotations = previous["metadata"].get("annotations", {}) if previous else {}
        if batching is None:
            batching = check_batching(json.loads(annotations.get(BATCHING, "null")))
        if scaling is None:  # as the endpoint has them (1 copy for a new one)
            scaling = self._stored_replicas(annotations) or check_replicas(1, self.max_replicas)
            if kind == "InferenceService":
                scaling = self._kserve_replicas(scaling, None)
        objects = endpoint_objects(
            owner,
            name,
            sorted(find_versions(base)),
            ModelRepository(name, base).read_labels(),
            gpus,
            batching,
            self.settings,
            kserve=kind == "InferenceService",
            replicas=scaling,
        )
        main = next(o for o in objects if o["kind"] == kind)
        main_name = main["metadata"]["name"]
        main["metadata"].setdefault("annotations", {}).update(
            {BATCHING: json.dumps(batching), GPUS: str(gpus), REPLICAS: json.dumps(scaling)}
        )
        if kind == "Deployment" and previous is not None and autoscales(scaling):
            # the HPA owns the scale: an update keeps the copies it made (within the bounds)
            current = previous.get("spec", {}).get("replicas")
            if isinstance(current, int):
                main["spec"]["replicas"] = min(max(current, scaling["min"]), scaling["max"])
        if self.settings.queue is not None:
            await self._ensure_local_queue(owner)
        await self._apply(objects, main_name)
        return await self._get(owner, name)

    async def _apply(self, objects: list[dict[str, Any]], main_name: str) -> None:
        """Create or update the endpoint's objects; delete the HPA or PDB its settings no
        longer call for (a stale HPA first: it would rescale the Deployment; a stale PDB
        last: it guards the pods until they are updated; 404: there was none)."""
        made = {o["kind"] for o in objects}
        stale = [k for k in SCALING_KINDS if k not in made]
        try:
            if "HorizontalPodAutoscaler" in stale:
                await self.kube.delete(self._path("HorizontalPodAutoscaler", main_name))
            for obj in objects:
                path = self._path(obj["kind"], obj["metadata"]["name"])
                try:
                    await self.kube.call("PUT", path, obj)
                except ApiException as e:
                    if e.status != 404:
                        raise
                    await self.kube.call("POST", self._path(obj["kind"]), obj)
            if "PodDisruptionBudget" in stale:
                await self.kube.delete(self._path("PodDisruptionBudget", main_name))
        except ApiException as e:
            raise ServingError(
                f"Kubernetes refused the endpoint: {e.reason} ({e.status})"
            ) from None

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

    def _stored_replicas(self, annotations: dict[str, str]) -> dict[str, Any] | None:
        """The replica settings an object was made with (None: made before replicas), within
        today's limit."""
        try:
            stored = json.loads(annotations.get(REPLICAS, "null"))
            if not isinstance(stored, dict):
                return None
            for key in ("min", "max"):
                if isinstance(stored.get(key), int):
                    stored[key] = min(stored[key], self.max_replicas)
            return check_replicas(stored, self.max_replicas)
        except (ValueError, BadRequest):
            return None

    def _record(self, owner: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        name = meta["labels"]["hubforge.io/endpoint"]
        base = self.area(owner) / "models" / name
        annotations = meta.get("annotations", {})
        status = obj.get("status", {})
        if obj["kind"] == "Deployment":
            ready = int(status.get("readyReplicas") or 0)
            running = ready >= 1
            fixed = obj.get("spec", {}).get("replicas", 1)
        else:
            running = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", [])
            )
            # KServe >= 0.16 counts the predictor's ready pods here; before, its pods
            copies = status.get("modelStatus", {}).get("copies", {}).get("totalCopies")
            ready = int(copies) if isinstance(copies, int) else int(running)
            fixed = obj.get("spec", {}).get("predictor", {}).get("minReplicas", 1)
        replicas = self._stored_replicas(annotations)
        if replicas is None:  # made before replicas: as many as its spec says
            fixed = fixed if isinstance(fixed, int) and fixed >= 1 else 1
            replicas = {"min": fixed, "max": fixed, "target_concurrency": None, "target_cpu": None}
        return {
            "owner": owner,
            "name": name,
            "base_path": str(base),
            "versions": sorted(find_versions(base)),
            "running": running,
            "created": meta.get("creationTimestamp"),
            "batching": check_batching(json.loads(annotations.get(BATCHING, "null"))),
            "gpus": int(annotations.get(GPUS, "0")),
            "replicas": replicas,
            "ready": ready,
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
        # the HPA first (it would scale what goes), the PDB after the pods' owner
        kinds = ["HorizontalPodAutoscaler", record["kind"], "PodDisruptionBudget", "ConfigMap"]
        if record["kind"] == "Deployment":
            kinds.insert(2, "Service")
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

    # -- canary rollouts (serving.pinning): the pods reload the model config --------------
    def labels_changed(self, owner: str, name: str, pinned: int | None) -> None:
        """The ConfigMap follows labels.json; with a pin, until every ready pod serves the
        pinned version under the stable label (before the canary's folder is copied in:
        with TF Serving's "latest" policy the pods would otherwise serve it to everyone)."""
        self._run(self._put_config(owner, name))
        if pinned is not None:
            self._wait_pods(owner, name, f"labels/{STABLE_LABEL}", f"the pin of version {pinned}")

    def wait_served(self, owner: str, name: str, version: int) -> None:
        self._wait_pods(owner, name, f"versions/{version}", f"version {version}")

    async def _put_config(self, owner: str, name: str) -> None:
        kind = await self._main_kind()
        previous = await self._find(kind, owner, name)
        if previous is None:
            raise NotFound(f"No endpoint {name!r} for {owner}")
        annotations = previous["metadata"].get("annotations", {})
        base = self.area(owner) / "models" / name
        cm = config_map(
            owner,
            name,
            sorted(find_versions(base)),
            ModelRepository(name, base).read_labels(),
            check_batching(json.loads(annotations.get(BATCHING, "null"))),
            self.settings,
        )
        try:
            await self.kube.call("PUT", self._path("ConfigMap", cm["metadata"]["name"]), cm)
        except ApiException as e:
            raise ServingError(
                f"Kubernetes refused the model config: {e.reason} ({e.status})"
            ) from None

    async def _ready_pods(self, owner: str, name: str) -> list[str]:
        """The base URLs of the endpoint's ready pods (their IP and REST port)."""
        found = await self.kube.call(
            "GET",
            f"/api/v1/namespaces/{self.settings.namespace}/pods",
            query=[("labelSelector", f"hubforge.io/owner={owner},hubforge.io/endpoint={name}")],
        )
        urls = []
        for pod in found.get("items", []):
            status = pod.get("status", {})
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", [])
            )
            if not ready or not status.get("podIP"):
                continue
            ports = [
                p.get("containerPort")
                for c in pod.get("spec", {}).get("containers", [])
                for p in c.get("ports", [])
                if p.get("name") == "http" or p.get("containerPort") == REST_PORT
            ]
            urls.append(f"http://{status['podIP']}:{ports[0] if ports else REST_PORT}")
        return urls

    def _wait_pods(self, owner: str, name: str, what: str, says: str) -> None:
        """Until every ready pod of the endpoint answers ``v1/models/<name>/<what>`` with an
        available version; ServingError after ``canary_wait_s``."""
        limit = self.settings.canary_wait_s
        deadline = time.monotonic() + limit
        while True:
            pods = self._run(self._ready_pods(owner, name))
            waiting = [url for url in pods if not _serves(f"{url}/v1/models/{name}/{what}")]
            if pods and not waiting:
                return
            if time.monotonic() >= deadline:
                raise ServingError(
                    f"{says} of {name} was not served by "
                    + (f"{len(waiting)} of its {len(pods)} ready pods" if pods else "any pod")
                    + f" within {limit:.0f} s (they reload the model config from its "
                    "ConfigMap); the canary did not begin: try again, or deploy without canary"
                )
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _serves(url: str) -> bool:
    try:
        r = requests.get(url, timeout=5)
        states = r.json().get("model_version_status", []) if r.status_code == 200 else []
    except (requests.RequestException, ValueError, AttributeError):
        return False
    return any(s.get("state") == "AVAILABLE" for s in states)
