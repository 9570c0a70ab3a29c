"""A model server: TF Serving's REST API for one or several models.

    python -m hubforge.serving.server --rest_api_port=8501 --model_name=NAME --model_base_path=DIR
    hubforge-model-server --rest_api_port=8501 --model_config_file=models.config

takes TF Serving's flags (and config files: models with version policies and labels, batching
parameters, monitoring) and answers as TF Serving's REST API does:

GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            version status
GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures
POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar predict
POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   tf.Example classification
POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress    tf.Example regression
GET  /v2/..., POST /v2/models/{name}[/versions/{v}]/infer   the Open Inference Protocol
GET  /healthz, /metrics (Prometheus; also at the monitoring config's path)
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from .batching import Batcher
from .codec import (
    LARGE_BODY,
    Codec,
    check_body,
    decode_predict,
    encode_outputs,
    inputs_for,
    large_outputs,
)
from .config import (
    ConfigError,
    ModelSpec,
    read_batching_parameters,
    read_model_config,
    read_monitoring_config,
)
from .errors import BadRequest, NotFound, ServingError, TooLarge
from .examples import (
    classify,
    classify_examples,
    decode_examples,
    regress,
    regress_examples,
)
from .oip import OipMixin, model_metadata
from .protocol import format_outputs, inputs_of, parse_body, parse_json
from .repository import ModelRepository

log = logging.getLogger("hubforge.serving")

ROUTE = (
    r"/v1/models/([^/:]+)(?:/versions/([^/:]+)|/labels/([^/:]+))?"
    r"(/metadata|:predict|:classify|:regress)?"
)
VERBS = (":predict", ":classify", ":regress")
V2_ROUTE = r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hubforge_serving_requests", "Requests", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "hubforge_serving_latency_seconds",
            "Request latency",
            ["method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
        )
        # TF Serving's own metric name, so its dashboards work (model_name, status)
        self.tf_requests: dict[tuple[str, str], int] = defaultdict(int)
        self.registry.register(self)
        # what an HPA scales on (replicas target_concurrency on Kubernetes, through a
        # custom-metrics adapter: docs/kubernetes.md)
        self.in_flight = Gauge(
            "hubforge_endpoint_requests_in_flight",
            "Model requests being answered now",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "hubforge_serving_batch_size",
            "Instances per model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )

    def collect(self) -> Any:
        """``:tensorflow:serving:request_count`` exactly as TF Serving names it (a Counter
        here would be exposed with a ``_total`` suffix)."""
        name = ":tensorflow:serving:request_count"
        metric = Metric(name, "Requests by model and status (TF Serving's metric)", "untyped")
        for (model, status), count in sorted(self.tf_requests.items()):
            metric.add_sample(name, {"model_name": model, "status": status}, count)
        yield metric


KEY_HEADER = "X-Hubforge-Endpoint-Key"
KEY_ENV = "HUBFORGE_ENDPOINT_KEY"


class GatewayOnly(web.RequestHandler):
    """With a key (a workbench's endpoint), every request must carry it: only the gateway,
    which checked the caller's hub token, knows it. Other users' processes on this machine
    reach the port but get 403. Without a key (run by hand) the server answers anyone."""

    def prepare(self) -> None:
        key = self.settings.get("endpoint_key")
        given = self.request.headers.get(KEY_HEADER, "")
        if key and not hmac.compare_digest(given.encode(), key.encode()):
            self.set_status(403)
            self.set_header("Content-Type", "application/json")
            self.finish(
                json.dumps(
                    {
                        "error": "This endpoint answers only the Hubforge gateway: call "
                        "<hub>/services/hubforge/endpoints/<owner>/<name>/v1/... with a hub token"
                    }
                )
            )


class Models:
    """The models a server serves, by name (reloaded when the model config file changes)."""

    def __init__(self, repos: dict[str, ModelRepository]):
        self.repos = repos

    def get(self, name: str, version: str | None) -> ModelRepository:
        if name not in self.repos:
            spec = f"Specific({name}, {version})" if version else f"Latest({name})"
            raise NotFound(
                f"Servable not found for request: {spec} (this server serves: "
                f"{', '.join(sorted(self.repos))})"
            )
        return self.repos[name]

    def refresh(self) -> None:
        for repo in list(self.repos.values()):
            try:
                repo.refresh()
            except ServingError as e:  # e.g. a base path that is gone: the others go on
                log.warning("%s: %s", repo.name, e)


class ModelHandler(GatewayOnly):
    def initialize(
        self,
        models: Models,
        metrics: Metrics,
        max_body: int,
        batcher: Batcher | None,
        codec: Codec,
    ) -> None:
        self.models, self.metrics, self.max_body = models, metrics, max_body
        self.batcher, self.codec = batcher, codec
        self.started = time.perf_counter()
        self.verb = "get"

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        self.metrics.in_flight.inc()
        self._in_flight = True
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > self.max_body:
            self.fail(TooLarge(f"Request body of {length} bytes exceeds {self.max_body}"))

    def fail(self, error: ServingError) -> None:
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": str(error)}))

    def _answered(self) -> None:
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            self.metrics.in_flight.dec()

    def on_connection_close(self) -> None:  # the caller went away before the answer
        self._answered()
        super().on_connection_close()

    def on_finish(self) -> None:
        self._answered()
        code = self.get_status()
        self.metrics.requests.labels(self.verb, str(code)).inc()
        self.metrics.latency.labels(self.verb).observe(time.perf_counter() - self.started)
        status = {200: "OK", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}.get(code, "UNKNOWN")
        self.metrics.tf_requests[(self.path_args[0] if self.path_args else "", status)] += 1

    def target(self, name: str, version: str | None, label: str | None) -> tuple[Any, int | None]:
        if version is not None and not version.isdigit():
            raise BadRequest(f"Malformed request: version '{version}' is not a number")
        if version is not None and int(version) >= 2**63:  # TF Serving's int64 versions
            raise BadRequest(f"Failed to convert version: {version}")
        return self.models.get(name, version), int(version) if version else None

    def malformed(self) -> BadRequest:
        return BadRequest(
            f"Malformed request: {self.request.method} {self.request.path} (GET "
            ".../{name}[/versions/{v}|/labels/{l}][/metadata]; POST ...:predict, :classify "
            "or :regress)"
        )

    def get(self, name: str, version: str | None, label: str | None, suffix: str | None) -> None:
        try:
            if suffix in VERBS:  # TF Serving: 400 "Malformed request" for GET ...:predict
                raise self.malformed()
            repo, number = self.target(name, version, label)
            if suffix == "/metadata":
                model = repo.resolve(number, label)
                self.write(
                    {
                        "model_spec": {
                            "name": name,
                            "signature_name": "",
                            "version": str(model.version),
                        },
                        "metadata": model.metadata(),
                    }
                )
            else:
                if label is not None:
                    number = repo.resolve(None, label).version
                self.write(repo.status(number))
        except ServingError as e:
            self.fail(e)

    async def post(
        self, name: str, version: str | None, label: str | None, suffix: str | None
    ) -> None:
        try:
            if suffix not in VERBS:  # TF Serving: 400 "Malformed request" (not 404)
                raise self.malformed()
            self.verb = suffix[1:]
            repo, number = self.target(name, version, label)
            if suffix == ":predict":
                await self.predict_request(repo, number, label)
            else:
                await self.examples_request(repo, number, label, suffix[1:])
        except ServingError as e:
            self.fail(e)
        except RecursionError:  # rows nested deeper than any tensor: the client's mistake
            self.fail(BadRequest("The request nests its values too deeply"))

    async def examples_request(
        self, repo: Any, number: int | None, label: str | None, method: str
    ) -> None:
        """A classify or regress; a large body's examples are decoded in the codec process
        (other callers of this endpoint are answered meanwhile), the model runs here."""
        raw = self.request.body
        model = repo.resolve(number, label)
        if len(raw) < LARGE_BODY:
            body = parse_json(raw)
            run = classify if method == "classify" else regress
            self.write(await asyncio.to_thread(run, model, body))
            return
        name, serialized = await self.codec.run(decode_examples, raw, method)
        run_examples = classify_examples if method == "classify" else regress_examples
        self.write(await asyncio.to_thread(run_examples, model, name, serialized))

    async def predict_request(self, repo: Any, number: int | None, label: str | None) -> None:
        """A predict; a large body is decoded (and a large answer encoded) in the codec
        process, so other callers of this endpoint are answered meanwhile."""
        raw = self.request.body
        if len(raw) < LARGE_BODY:
            body = parse_body(raw)
            model = repo.resolve(number, label)  # kept for the whole request: swaps are safe
            signature = model.signature(body.get("signature_name"))
            inputs, rows = inputs_of(body, signature)
            tensors = signature.prepare(inputs)
        else:
            try:
                model = repo.resolve(number, label)
            except ServingError:  # a malformed body is said first, as for small ones
                await self.codec.run(check_body, raw)
                raise
            name, tensors, rows = await self.codec.run(decode_predict, raw, inputs_for(model))
            signature = model.signature(name)  # no such signature: BadRequest, as above
        outputs = await self.call(signature, tensors, rows)
        if large_outputs(outputs):  # the bytes Tornado would write for the dict
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.write(await self.codec.run(encode_outputs, outputs, rows))
        else:
            self.write(format_outputs(outputs, rows))

    async def call(self, signature: Any, tensors: dict[str, Any], rows: bool) -> dict[str, Any]:
        if self.batcher and rows and signature.batchable:
            return await self.batcher.run(signature, tensors, self.metrics.batch_size.observe)
        outputs = await asyncio.to_thread(signature.call, tensors)
        self.metrics.batch_size.observe(len(next(iter(outputs.values()))))
        return outputs


class V2ModelHandler(OipMixin, ModelHandler):
    """The Open Inference Protocol's model routes (see oip.py)."""

    def get(self, name: str, version: str | None, suffix: str | None) -> None:  # type: ignore[override]
        try:
            repo, model = self.model(name, version)
            if suffix == "/ready":
                self.write({"name": name, "ready": True})
            elif suffix is None:
                self.write(model_metadata(name, sorted(repo.versions), model))
            else:
                raise self.malformed()
        except ServingError as e:
            self.fail(e)

    async def post(self, name: str, version: str | None, suffix: str | None) -> None:  # type: ignore[override]
        self.verb = "infer"
        try:
            if suffix != "/infer":
                raise self.malformed()
            await self.run_infer(name, version)
        except ServingError as e:
            self.fail(e)
        except RecursionError:
            self.fail(BadRequest("The request nests its values too deeply"))


class V2ServerHandler(GatewayOnly):
    def initialize(self, models: Models, **_: Any) -> None:
        self.models = models

    def get(self, kind: str | None = None) -> None:
        ready = all(repo.versions for repo in self.models.repos.values())
        if kind == "live":
            self.write({"live": True})
        elif kind == "ready":
            self.set_status(200 if ready else 503)
            self.write({"ready": ready})
        else:
            self.write(
                {
                    "name": "hubforge-model-server",
                    "version": "0.1.0",
                    "extensions": ["binary_tensor_data"],
                }
            )


class MalformedHandler(GatewayOnly):
    """Any other path: JSON errors as TF Serving gives them (http_rest_api_handler.cc:75),
    never Tornado's HTML pages: 400 under /v1/, 404 elsewhere."""

    def _refuse(self) -> None:
        path = self.request.path
        if not path.startswith("/v1/"):
            self.set_status(404)
            message = f"Not found: {path}; this server answers /v1/models/<name>..."
        elif path.rstrip("/") == "/v1/models" and self.request.method == "GET":
            self.set_status(400)
            message = "Missing model name in request."
        else:
            self.set_status(400)
            message = f"Malformed request: {self.request.method} {path}"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def get(self, *_: Any) -> None:
        self._refuse()

    def post(self, *_: Any) -> None:
        self._refuse()


class HealthHandler(GatewayOnly):
    def initialize(self, models: Models, **_: Any) -> None:
        self.models = models

    def get(self) -> None:
        served = {name: sorted(repo.versions) for name, repo in self.models.repos.items()}
        ready = all(served.values())
        first = next(iter(served))
        self.set_status(200 if ready else 503)
        self.write(
            {
                "model": first,
                "versions": served[first],
                "models": served,
                "status": "ok" if ready else "loading",
            }
        )


class MetricsHandler(GatewayOnly):
    def initialize(self, metrics: Metrics, **_: Any) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(generate_latest(self.metrics.registry))


def make_app(
    models: Models | ModelRepository,
    max_body: int = 16 * 1024 * 1024,
    batcher: Batcher | None = None,
    key: str = "",
    metrics_path: str | None = None,
) -> web.Application:
    if isinstance(models, ModelRepository):
        models = Models({models.name: models})
    args = {
        "models": models,
        "metrics": Metrics(),
        "max_body": max_body,
        "batcher": batcher,
        "codec": Codec(),
    }
    extra = [(metrics_path, MetricsHandler, args)] if metrics_path else []
    return web.Application(
        [
            (ROUTE, ModelHandler, args),
            (V2_ROUTE, V2ModelHandler, args),
            (r"/v2/?", V2ServerHandler, args),
            (r"/v2/health/(live|ready)", V2ServerHandler, args),
            (r"/healthz", HealthHandler, args),
            (r"/metrics", MetricsHandler, args),
            *extra,
            (r"/.*", MalformedHandler),
        ],
        endpoint_key=key,
    )


def repositories(specs: list[ModelSpec], old: dict[str, ModelRepository]) -> dict[str, Any]:
    """One repository per model; a model still read from the same folder keeps its own (and
    its loaded versions): a new version policy or new labels take effect at its next
    refresh, which loads what is now wanted before it drops what is not (as TF Serving keeps
    serving the versions a reloaded config still names: no moment without a version)."""
    repos = {}
    for spec in specs:
        repo = old.get(spec.name)
        if repo is None or str(repo.base_path) != spec.base_path:
            repo = ModelRepository(spec.name, spec.base_path, spec.policy, spec.labels)
        else:
            repo.policy, repo.fixed_labels = spec.policy, spec.labels
        repos[spec.name] = repo
    return repos


async def serve(
    name: str,
    base_path: str,
    port: int,
    host: str,
    poll: float,
    max_batch_size: int = 0,
    batch_timeout_ms: float = 2.0,
    config_file: str | None = None,
    config_poll: float = 0,
    metrics_path: str | None = None,
    sockets: list | None = None,
) -> None:
    """``sockets``: already bound (main binds the port before loading anything: nobody
    else can take it while the model loads)."""
    if config_file:
        models = Models(repositories(read_model_config(config_file), {}))
    else:  # one model: the newest version plus the labels.json ones
        models = Models({name: ModelRepository(name, base_path)})
    await asyncio.to_thread(models.refresh)
    batcher = Batcher(max_batch_size, batch_timeout_ms / 1000) if max_batch_size > 1 else None
    # the key comes in the environment, never argv: /proc/<pid>/cmdline is readable by all
    app = make_app(
        models, batcher=batcher, key=os.environ.pop(KEY_ENV, ""), metrics_path=metrics_path
    )
    server = HTTPServer(app, max_body_size=64 * 1024 * 1024)
    if sockets is None:
        sockets = bind_sockets(port, host)
    for sock in sockets:  # (reserved unlistening while the model loaded: refused till now)
        sock.listen(128)
        sock.setblocking(False)
    server.add_sockets(sockets)
    log.info("Serving %s on http://%s:%d", ", ".join(sorted(models.repos)), host, port)
    # New versions and label changes are picked up without a restart.
    PeriodicCallback(
        lambda: asyncio.ensure_future(asyncio.to_thread(models.refresh)), poll * 1000
    ).start()
    if config_file and config_poll > 0:  # TF Serving's --model_config_file_poll_wait_seconds

        def reload() -> None:
            try:
                specs = read_model_config(config_file)
            except ConfigError as e:  # keep serving the last good config
                log.warning("model config not reloaded: %s", e)
                return
            models.repos = repositories(specs, models.repos)
            models.refresh()

        PeriodicCallback(
            lambda: asyncio.ensure_future(asyncio.to_thread(reload)), config_poll * 1000
        ).start()
    await asyncio.Event().wait()


def _flag_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parser() -> argparse.ArgumentParser:
    """TF Serving's flags (``--model_name`` spelling; ``--model-name`` works too)."""
    p = argparse.ArgumentParser(
        prog="hubforge-model-server",
        description="Serve SavedModels with TF Serving's REST API (and its flags)",
    )

    def flag(name: str, **kw: Any) -> None:
        p.add_argument(f"--{name}", *([f"--{name.replace('_', '-')}"] if "_" in name else []), **kw)

    flag("rest_api_port", type=int, default=8501, help="REST port (default 8501)")
    flag("port", type=int, default=None, help="TF Serving's gRPC port: accepted, not served")
    flag("host", default="127.0.0.1", help="address to listen on (default loopback)")
    flag("model_name", default="default", help="the model's name (default 'default')")
    flag("model_base_path", default=None, help="folder with numbered version folders")
    flag("model_config_file", default=None, help="ModelServerConfig text proto (several models)")
    flag("model_config_file_poll_wait_seconds", type=float, default=0, help="0: read once")
    flag("file_system_poll_wait_seconds", type=float, default=None, help="version scan period")
    flag("poll", type=float, default=None, help=argparse.SUPPRESS)
    flag("enable_batching", type=_flag_bool, nargs="?", const=True, default=False)
    flag("batching_parameters_file", default=None, help="BatchingParameters text proto")
    flag("max_batch_size", type=int, default=0, help="rows per model call (0: no batching)")
    flag("batch_timeout_ms", type=float, default=2.0, help="longest wait for other requests")
    flag("monitoring_config_file", default=None, help="MonitoringConfig text proto")
    for accepted in (
        "allow_version_labels_for_unavailable_models",
        "rest_api_enable_cors_support",
    ):
        flag(
            accepted,
            type=_flag_bool,
            nargs="?",
            const=True,
            default=False,
            help="accepted for TF Serving compatibility",
        )
    for accepted in (
        "rest_api_num_threads",
        "rest_api_timeout_in_ms",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
    ):
        flag(accepted, type=int, default=None, help="accepted for TF Serving compatibility")
    flag("saved_model_tags", default="serve", help="only 'serve' is read")
    return p


def reserve_port(port: int, host: str) -> socket.socket:
    """A socket bound to ``port`` that does not listen yet: nobody else can bind the port
    (no SO_REUSEADDR, which would let another such socket share it), and connections are
    refused until ``serve`` listens, once the model answers."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


# What TensorFlow's own import loads of Keras "so that optimizers register for SavedModels":
# a server only runs the signatures of SavedModels (no Keras object is restored), and those
# imports are ~0.8 s of each start's ~3.2 s of CPU (tf_keras, or Keras 3 with scikit-learn).
EAGER_KERAS = ("tf_keras.src.optimizers", "keras.src.optimizers")


def import_tensorflow_without_keras() -> None:
    """Import TensorFlow without the Keras it loads eagerly (TensorFlow skips a Keras it
    cannot import); Keras stays importable afterwards, as before."""
    blocked = [name for name in EAGER_KERAS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import tensorflow  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras, if ever asked for: tf_keras
    # our own lines at INFO; Tornado's access log stays off (a line per request costs latency)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    p = parser()
    args = p.parse_args(argv)
    if bool(args.model_config_file) == bool(args.model_base_path):
        p.error("give --model_base_path (one model) or --model_config_file (several), not both")
    if args.saved_model_tags != "serve":
        p.error("--saved_model_tags: only 'serve' is supported")
    if args.port is not None:
        log.warning(
            "gRPC (--port=%s) is not served; REST answers on %d", args.port, args.rest_api_port
        )
    max_batch, timeout_ms = args.max_batch_size, args.batch_timeout_ms
    metrics_path = None
    try:
        if args.model_config_file:
            read_model_config(args.model_config_file)  # refuse a bad file before listening
        if args.batching_parameters_file:
            if not args.enable_batching:
                p.error("--batching_parameters_file needs --enable_batching")
            max_batch, timeout_ms = read_batching_parameters(args.batching_parameters_file)
        elif args.enable_batching and not max_batch:
            max_batch, timeout_ms = 1000, 0.0  # TF Serving's defaults
        if args.monitoring_config_file:
            metrics_path = read_monitoring_config(args.monitoring_config_file)
    except ConfigError as e:
        print(f"hubforge-model-server: {e}", file=sys.stderr)
        sys.exit(2)
    if args.model_base_path and not Path(args.model_base_path).is_dir():
        p.error(f"--model_base_path {args.model_base_path} is not a folder")
    poll = args.file_system_poll_wait_seconds or args.poll or 1.0
    try:  # the port is ours from now on, before the seconds the model takes to load
        sockets = [reserve_port(args.rest_api_port, args.host)]
    except OSError as e:
        print(f"hubforge-model-server: port {args.rest_api_port}: {e}", file=sys.stderr)
        sys.exit(2)
    import_tensorflow_without_keras()
    asyncio.run(
        serve(
            args.model_name,
            args.model_base_path,
            args.rest_api_port,
            args.host,
            poll,
            max_batch,
            timeout_ms,
            config_file=args.model_config_file,
            config_poll=args.model_config_file_poll_wait_seconds,
            metrics_path=metrics_path,
            sockets=sockets,
        )
    )


if __name__ == "__main__":
    main()
