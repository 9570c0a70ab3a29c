"""A small fake Kubernetes API server on loopback for testing the I/O layer.

Stores what clients POST, answers GET (one or a list, with labelSelector), PUT (refused
with 409 when it names an older resourceVersion, as the API server), DELETE and pod logs.
Tests set ``status`` on stored objects and add pods to play the controllers.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from typing import Any

from tornado import web

PATH = re.compile(
    r"^/(?P<group>api/v1|apis/[^/]+/[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?P<log>/log)?$"
)
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"


class FakeKubernetes:
    def __init__(self, crds: set[str] | None = None):
        self.crds = set(crds or ())
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.token = "fake-sa-token"
        self._version = 0  # resourceVersion of the last write
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application([(r"/.*", Handler, {"fake": self})])
        server = app.listen(self.port, "127.0.0.1")
        ready.set()
        self._loop.run_forever()
        server.stop()
        self._loop.run_until_complete(server.close_all_connections())

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def of_kind(self, plural: str) -> list[dict[str, Any]]:
        return [o for (p, _, _), o in self.objects.items() if p == plural]

    def add_pod(
        self,
        ns: str,
        name: str,
        labels: dict,
        phase: str,
        log: str = "",
        exit_code: int | None = None,
    ) -> None:
        status: dict[str, Any] = {"phase": phase}
        if exit_code is not None:
            status["containerStatuses"] = [
                {
                    "name": "tensorflow",
                    "ready": False,
                    "restartCount": 0,
                    "image": "x",
                    "imageID": "",
                    "state": {"terminated": {"exitCode": exit_code}},
                }
            ]
        self.objects[("pods", ns, name)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "status": status,
            "metadata": {"name": name, "namespace": ns, "labels": labels},
        }
        self.logs[name] = log


def matches(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in (p.split("=", 1) for p in selector.split(",")))


class Handler(web.RequestHandler):
    def initialize(self, fake: FakeKubernetes) -> None:
        self.fake = fake

    def prepare(self) -> None:
        self.fake.requests.append((self.request.method, self.request.path))
        if self.request.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self.send(401, {"kind": "Status", "reason": "Unauthorized"})

    def send(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def route(self) -> re.Match:
        match = PATH.match(self.request.path)
        if not match:
            self.send(404, {"kind": "Status", "reason": "NotFound"})
        return match

    def get(self) -> None:
        if self.request.path.startswith(CRDS):
            name = self.request.path[len(CRDS) :]
            if name in self.fake.crds:
                return self.send(
                    200, {"kind": "CustomResourceDefinition", "metadata": {"name": name}}
                )
            return self.send(404, {"kind": "Status", "reason": "NotFound"})
        m = self.route()
        if not m:
            return
        if m["log"]:
            self.set_header("Content-Type", "text/plain")
            return self.finish(self.fake.logs.get(m["name"], ""))
        if m["name"]:
            obj = self.fake.objects.get((m["plural"], m["ns"], m["name"]))
            return self.send(200, obj) if obj else self.send(404, {"reason": "NotFound"})
        selector = self.get_argument("labelSelector", None)
        items = [
            o
            for (p, ns, _), o in self.fake.objects.items()
            if p == m["plural"] and ns == m["ns"] and matches(o, selector)
        ]
        self.send(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})

    def post(self) -> None:
        m = self.route()
        if not m:
            return
        body = json.loads(self.request.body)
        key = (m["plural"], m["ns"], body["metadata"]["name"])
        if key in self.fake.objects:
            return self.send(409, {"kind": "Status", "reason": "AlreadyExists"})
        body["metadata"].update(
            uid=f"uid-{len(self.fake.objects)}",
            creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            resourceVersion=self.fake.next_version(),
        )
        self.fake.objects[key] = body
        self.send(201, body)

    def put(self) -> None:
        m = self.route()
        if not m:
            return
        key = (m["plural"], m["ns"], m["name"])
        old = self.fake.objects.get(key)
        if old is None:
            return self.send(404, {"kind": "Status", "reason": "NotFound"})
        body = json.loads(self.request.body)
        given = body["metadata"].get("resourceVersion")
        if given is not None and given != old["metadata"].get("resourceVersion"):
            # optimistic concurrency, as the API server: an update of an older version fails
            return self.send(409, {"kind": "Status", "reason": "Conflict"})
        for field in ("uid", "creationTimestamp"):
            body["metadata"][field] = old["metadata"][field]
        body["metadata"]["resourceVersion"] = self.fake.next_version()
        if "status" in old:
            body["status"] = old["status"]  # the status subresource is the controller's
        self.fake.objects[key] = body
        self.send(200, body)

    def delete(self) -> None:
        m = self.route()
        if not m:
            return
        obj = self.fake.objects.pop((m["plural"], m["ns"], m["name"]), None)
        self.send(200 if obj else 404, obj or {"reason": "NotFound"})
