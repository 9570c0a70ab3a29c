"""The public serving API: ``deploy`` an exported model, then call the ``Endpoint``.

Inside a hub the hubforge service runs endpoints (they outlive your server); each call to an
endpoint goes through the service's gateway with your token.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from ..client import ServiceClient, ServiceError
from .drift_report import DriftReport
from .errors import BadRequest, NotFound, ServingError
from .traffic_report import TrafficReport


def _client() -> ServiceClient:
    if not ServiceClient.available():
        raise ServingError(
            "Endpoints are run by the hubforge service: use this inside a "
            "Hubforge server (HUBFORGE_SERVICE_URL and JUPYTERHUB_API_TOKEN)"
        )
    return ServiceClient()


def _call(client: ServiceClient, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return client.request(method, path, **kwargs)
    except ServiceError as e:
        error = {400: BadRequest, 404: NotFound}.get(e.status, ServingError)
        raise error(str(e)) from None


INLINE_BODY = 300  # characters of JSON a curl line carries as it is


def curl_line(instances: list, url: str, token_page: str) -> str:
    """``curl`` posting ``{"instances": ...}`` to ``url``; long bodies of repeated values (an
    image of zeros) as a short Python expression piped in, not a wall of numbers."""
    body = json.dumps({"instances": instances})
    call = 'curl -H "Authorization: token $TOKEN"'
    hint = f"  # $TOKEN: a token of yours, from {token_page}"
    if len(body) <= INLINE_BODY:
        return f"{call} -d {shlex.quote(body)} {shlex.quote(url)}{hint}"
    make = f'import json; print(json.dumps({{"instances": {_expression(instances)}}}))'
    return f"python3 -c {shlex.quote(make)} | {call} -d @- {shlex.quote(url)}{hint}"


def _expression(value: Any) -> str:
    """A Python expression for ``value`` (JSON-shaped) that repeats equal items: [0]*32."""
    if isinstance(value, list) and len(value) > 1 and all(v == value[0] for v in value):
        return f"[{_expression(value[0])}]*{len(value)}"
    if isinstance(value, list):
        return "[" + ", ".join(_expression(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}: {_expression(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    return json.dumps(value)


class Endpoint:
    def __init__(self, record: dict[str, Any], client: ServiceClient):
        self.record = record
        self._client = client

    name = property(lambda self: self.record["name"])
    url = property(lambda self: self.record["url"])
    versions = property(lambda self: self.record["versions"])
    batching = property(lambda self: self.record.get("batching"))
    replicas = property(lambda self: self.record.get("replicas"))
    ready = property(lambda self: self.record.get("ready", 0))  # copies serving (at the last look)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} versions={self.versions} {self.url}>"

    @property
    def status(self) -> str:
        self.record = _call(self._client, "GET", f"endpoints/{self.name}")
        return "running" if self.record["running"] else "stopped"

    def _gateway(self, suffix: str) -> str:
        service = self._client.url.rsplit("/api", 1)[0]
        return (
            f"{service}/endpoints/{self.record['owner']}/{self.name}/v1/models/{self.name}" + suffix
        )

    @property
    def public_url(self) -> str:
        """The URL other applications call (the hub's origin + the gateway path)."""
        return os.environ.get("HUBFORGE_PUBLIC_ORIGIN", "http://HUB-HOST") + self.url

    def curl(self, instances: list | None = None) -> str:
        """A line to paste into a shell that calls predict with your token in $TOKEN (the
        line ends saying where to get one). ``instances`` default to the example shaped like
        the model's signature (what Try it sends; the endpoint must be running); a body over
        INLINE_BODY characters is made by ``python3`` on the caller's side and piped in."""
        if instances is None:
            instances = self.example_instances()
        return curl_line(instances, self.public_url + ":predict", self.token_page)

    @property
    def token_page(self) -> str:
        """Where a user makes an API token: the hub's token page."""
        origin = os.environ.get("HUBFORGE_PUBLIC_ORIGIN", "http://HUB-HOST")
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        return origin + base.rstrip("/") + "/hub/token"

    def metadata(self) -> dict[str, Any]:
        """TF Serving's metadata: the signatures, their inputs and outputs."""
        r = self._client.session.get(self._gateway("/metadata"), timeout=60)
        if r.status_code >= 400:
            raise ServingError(r.json().get("error", r.text) if r.text else r.reason)
        return r.json()

    def example_instances(self) -> list:
        """One all-zero row shaped like the default signature's inputs (for "try it")."""
        sig = self.metadata()["metadata"]["signature_def"]["signature_def"]["serving_default"]
        row = {}
        for name, spec in sig["inputs"].items():
            dims = [int(d["size"]) for d in spec.get("tensor_shape", {}).get("dim", [])][1:]
            value: Any = "" if spec["dtype"] == "DT_STRING" else 0
            for size in reversed(dims):
                value = [value] * max(size, 1)
            row[name] = value
        return [next(iter(row.values()))] if len(row) == 1 else [row]

    def predict(
        self, instances: list, version: int | None = None, signature_name: str | None = None
    ) -> list:
        """Row-format predict through the gateway; returns the predictions."""
        suffix = (f"/versions/{version}" if version else "") + ":predict"
        body: dict[str, Any] = {"instances": instances}
        if signature_name:
            body["signature_name"] = signature_name
        r = self._client.session.post(self._gateway(suffix), json=body, timeout=60)
        if r.status_code >= 400:
            raise (
                BadRequest(r.json().get("error", r.text))
                if r.status_code < 500
                else ServingError(r.text)
            )
        return r.json()["predictions"]

    @property
    def rollout(self) -> dict[str, Any] | None:
        """The last canary rollout (state running, promoted or rolled_back; percent, stable,
        canary, reason, history), as of the last look; None without one."""
        return self.record.get("rollout")

    def rollback(self) -> dict[str, Any]:
        """Roll the running canary back now: every request goes to the stable version."""
        rollout = _call(self._client, "DELETE", f"endpoints/{self.name}/rollout")
        self.record["rollout"] = rollout
        return rollout

    # -- request logging and drift (serving.request_log, serving.drift) -------------------
    def log_requests(self, rate: float = 0.1, max_body_bytes: int = 65536) -> dict[str, Any]:
        """Keep ``rate`` of the calls answered 200 (bodies up to ``max_body_bytes``) in your
        area, ``models/<name>/requests/*.jsonl`` (yours only); ``rate=0`` stops it."""
        body = {"rate": rate, "max_body_bytes": max_body_bytes}
        kept = _call(self._client, "PUT", f"endpoints/{self.name}/request-log", json=body)
        self.record["request_log"] = kept
        return kept

    def logged_requests(self, since: float | None = None) -> list[dict[str, Any]]:
        """The calls kept so far (each: time, version, request, response), oldest first;
        ``since``: a time (seconds since the epoch) to start from. Files the service wrote
        within the last 10 s are not there yet."""
        folder = Path(self.record["base_path"]) / "requests"
        entries = []
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (since is None or entry.get("time", 0) >= since):
                    entries.append(entry)
        return sorted(entries, key=lambda e: e.get("time", 0))

    def drift(self, training_data: Any, since: float | None = None) -> DriftReport:
        """The logged calls' inputs against ``training_data`` (rows x features), feature by
        feature: means, spreads, share out of range, PSI and KS (``.drifted``, ``.plot()``)."""
        from . import drift

        rows = [r for e in self.logged_requests(since) for r in drift.rows_of(e["request"]) or []]
        if not rows:
            raise BadRequest(
                f"No logged calls of {self.name} yet: turn logging on with "
                "log_requests(rate=...) and wait for calls (written every 10 s)"
            )
        return DriftReport(self.name, drift.compare(rows, drift.baseline(training_data)))

    def watch_drift(self, training_data: Any, notify: dict | None = None) -> dict[str, Any]:
        """Let the service compare the calls it logs with ``training_data`` (a sample of at
        most 2000 rows is sent) every minute; the endpoint's ``drift_alert`` goes on, and
        ``notify`` ({"on": "failure", "email": True}) is told, when they drift."""
        import numpy as np

        rows = np.asarray(training_data, dtype="float64")
        if len(rows) > 2000:
            rows = rows[np.random.default_rng(0).choice(len(rows), 2000, replace=False)]
        body: dict[str, Any] = {"rows": rows.tolist()}
        if notify is not None:
            body["notify"] = notify
        kept = _call(self._client, "PUT", f"endpoints/{self.name}/drift-baseline", json=body)
        self.record["request_log"] = kept
        return kept

    @property
    def drift_alert(self) -> dict[str, Any] | None:
        """The service's last drift check (``drifted``, ``psi_max``, ``worst_feature``,
        ``rows``, ``checked``), as of the last look (``status`` looks again)."""
        return (self.record.get("request_log") or {}).get("drift")

    def traffic(self, window: str | int = "1h", points: int = 60) -> TrafficReport:
        """What the gateway counted for this endpoint over ``window`` ("15m", "1h", "1d" or
        seconds; a day is kept): requests per second, errors, p50/p90/p99 latency, by status
        and version, in ``points`` steps (``.plot()`` draws them)."""
        summary = _call(
            self._client,
            "GET",
            f"endpoints/{self.name}/traffic",
            params={"window": str(window), "points": str(points)},
        )
        return TrafficReport(summary)

    def undeploy(self) -> None:
        _call(self._client, "DELETE", f"endpoints/{self.name}")
        self.record["running"] = False


def deploy(
    model_dir: str | os.PathLike,
    name: str,
    version: int | None = None,
    batching: dict[str, Any] | None = None,
    gpus: int = 0,
    canary: int | dict[str, Any] | None = None,
    replicas: int | dict[str, Any] | None = None,
) -> Endpoint:
    """Serve the SavedModel at ``model_dir`` (in your data area) as endpoint ``name``;
    deploying again adds a version and swaps it in without failing requests.

    ``canary=10``: the new version first gets 10 % of the requests, then 50 %, then all,
    every 5 minutes while its errors and p99 latency stay within limits of the version
    served until now; else it is rolled back by itself (``endpoint.rollout`` says why).
    A dict sets the steps, ``interval``, ``sticky_header``, the limits and ``notify``.

    ``model_dir`` may also be a finished training job (its exported model is deployed).
    ``batching``: ``{"max_batch_size": 32, "batch_timeout_ms": 2}`` merges concurrent
    requests into one model call (default off); changing it restarts the endpoint gracefully.
    ``replicas=3`` serves it with three copies (a crashed one is restarted; a call it was
    answering is sent to another); ``{"min": 1, "max": 4, "target_concurrency": 8}`` scales
    between them on the requests in flight per copy. None keeps what the endpoint has.
    """
    client = _client()
    model_dir = model_dir_of(model_dir)
    body = {
        "name": name,
        "model_dir": os.fspath(model_dir),
        "version": version,
        "batching": batching,
        "gpus": gpus,
        "canary": canary,
        "replicas": replicas,
    }
    return Endpoint(_call(client, "POST", "endpoints", json=body), client)


def model_dir_of(source: Any) -> str | os.PathLike:
    """A path as given, or the exported model of a training job."""
    artifacts = getattr(source, "artifacts", None)
    if artifacts is None:
        if not isinstance(source, str | os.PathLike):
            raise BadRequest(f"deploy() takes a model folder or a job, not {type(source).__name__}")
        return source
    if getattr(source, "status", "succeeded") != "succeeded":
        raise BadRequest(
            f"Job {source.id} is {source.status}: deploy it once it has succeeded "
            "(job.wait() waits for it)"
        )
    return artifacts["model_dir"]


def get(name: str) -> Endpoint:
    client = _client()
    return Endpoint(_call(client, "GET", f"endpoints/{name}"), client)


def list_endpoints() -> list[Endpoint]:
    client = _client()
    return [Endpoint(r, client) for r in _call(client, "GET", "endpoints")["endpoints"]]
