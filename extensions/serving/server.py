"""One endpoint process: TF Serving's REST API for one model.

Run as ``python -m hubforge.serving.server --model-name NAME --model-base-path DIR``.

GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            version status
GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signatures
POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar predict
GET  /healthz, /metrics (Prometheus)
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from tornado import web
from tornado.ioloop import PeriodicCallback

from .batching import Batcher
from .errors import BadRequest, NotFound, ServingError, TooLarge
from .protocol import format_outputs, inputs_of, parse_body
from .repository import ModelRepository

ROUTE = r"/v1/models/([^/:]+)(?:/versions/([^/:]+)|/labels/([^/:]+))?(/metadata|:predict)?"


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
        self.batch_size = Histogram(
            "hubforge_serving_batch_size",
            "Instances per model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )


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


class ModelHandler(GatewayOnly):
    def initialize(
        self, repo: ModelRepository, metrics: Metrics, max_body: int, batcher: Batcher | None
    ) -> None:
        self.repo, self.metrics, self.max_body = repo, metrics, max_body
        self.batcher = batcher
        self.started = time.perf_counter()

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > self.max_body:
            self.fail(TooLarge(f"Request body of {length} bytes exceeds {self.max_body}"))

    def fail(self, error: ServingError) -> None:
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": str(error)}))

    def on_finish(self) -> None:
        method = "predict" if self.request.method == "POST" else "get"
        self.metrics.requests.labels(method, str(self.get_status())).inc()
        self.metrics.latency.labels(method).observe(time.perf_counter() - self.started)

    def target(self, name: str, version: str | None, label: str | None) -> tuple[Any, int | None]:
        if name != self.repo.name:
            raise NotFound(f"No model '{name}' here; this endpoint serves '{self.repo.name}'")
        if version is not None and not version.isdigit():
            raise BadRequest(f"Malformed request: version '{version}' is not a number")
        if version is not None and int(version) >= 2**63:  # TF Serving's int64 versions
            raise BadRequest(f"Failed to convert version: {version}")
        return self.repo, int(version) if version else None

    def get(self, name: str, version: str | None, label: str | None, suffix: str | None) -> None:
        try:
            repo, number = self.target(name, version, label)
            if suffix == ":predict":
                raise BadRequest("predict needs POST")
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
            if suffix != ":predict":  # TF Serving: 400 "Malformed request" (not 404)
                raise BadRequest(
                    f"Malformed request: POST {self.request.path} (POST goes to "
                    ".../{name}[/versions/{v}]:predict)"
                )
            repo, number = self.target(name, version, label)
            body = parse_body(self.request.body)
            model = repo.resolve(number, label)  # kept for the whole request: swaps are safe
            signature = model.signature(body.get("signature_name"))
            inputs, rows = inputs_of(body, signature)
            tensors = signature.prepare(inputs)
            if self.batcher and rows and signature.batchable:
                outputs = await self.batcher.run(
                    signature, tensors, self.metrics.batch_size.observe
                )
            else:
                outputs = await asyncio.to_thread(signature.call, tensors)
                self.metrics.batch_size.observe(len(next(iter(outputs.values()))))
            self.write(format_outputs(outputs, rows))
        except ServingError as e:
            self.fail(e)
        except RecursionError:  # rows nested deeper than any tensor: the client's mistake
            self.fail(BadRequest("The request nests its values too deeply"))


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
    def initialize(self, repo: ModelRepository, **_: Any) -> None:
        self.repo = repo

    def get(self) -> None:
        served = sorted(self.repo.versions)
        self.set_status(200 if served else 503)
        self.write(
            {"model": self.repo.name, "versions": served, "status": "ok" if served else "loading"}
        )


class MetricsHandler(GatewayOnly):
    def initialize(self, metrics: Metrics, **_: Any) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(generate_latest(self.metrics.registry))


def make_app(
    repo: ModelRepository,
    max_body: int = 16 * 1024 * 1024,
    batcher: Batcher | None = None,
    key: str = "",
) -> web.Application:
    args = {"repo": repo, "metrics": Metrics(), "max_body": max_body, "batcher": batcher}
    return web.Application(
        [
            (ROUTE, ModelHandler, args),
            (r"/healthz", HealthHandler, args),
            (r"/metrics", MetricsHandler, args),
            (r"/.*", MalformedHandler),
        ],
        endpoint_key=key,
    )


async def serve(
    name: str,
    base_path: str,
    port: int,
    host: str,
    poll: float,
    max_batch_size: int = 0,
    batch_timeout_ms: float = 2.0,
) -> None:
    repo = ModelRepository(name, base_path)
    await asyncio.to_thread(repo.refresh)
    batcher = Batcher(max_batch_size, batch_timeout_ms / 1000) if max_batch_size > 1 else None
    # the key comes in the environment, never argv: /proc/<pid>/cmdline is readable by all
    app = make_app(repo, batcher=batcher, key=os.environ.pop(KEY_ENV, ""))
    app.listen(port, host, max_body_size=64 * 1024 * 1024)
    # New versions and label changes are picked up without a restart.
    refresher = PeriodicCallback(
        lambda: asyncio.ensure_future(asyncio.to_thread(repo.refresh)), poll * 1000
    )
    refresher.start()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a model with TF Serving's REST API")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-base-path", required=True)
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between version scans")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=0,
        help="rows per model call when batching concurrent requests (0: off)",
    )
    parser.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=2.0,
        help="longest a request waits for others to batch with",
    )
    args = parser.parse_args(argv)
    asyncio.run(
        serve(
            args.model_name,
            args.model_base_path,
            args.port,
            args.host,
            args.poll,
            args.max_batch_size,
            args.batch_timeout_ms,
        )
    )


if __name__ == "__main__":
    main()
