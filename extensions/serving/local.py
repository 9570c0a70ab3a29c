"""Local endpoints: one serving process per endpoint, run by the hubforge service.

Models live in TF Serving's layout in the owner's data area
(``users/<owner>/models/<name>/<version>/``); the records of running endpoints live in the
service's state folder, so a service or hub restart brings every endpoint back.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from ..atomic import DamagedStateFile, read_json, write_json, write_text
from ..confined import UnsafeEntry
from ..owner_files import Areas
from ..processes import MARKER, alive, free_port, workload_env
from .base import EndpointBackend, check_batching, versions_of
from .errors import BadRequest, NotFound, ServingError
from .recovery import keep_aside, mentioned, newest_by_endpoint, running_endpoints
from .repository import LABELS_FILE
from .rollout import STABLE_LABEL
from .server import KEY_ENV, KEY_HEADER

log = logging.getLogger(__name__)


class LocalEndpointBackend(EndpointBackend):
    def __init__(
        self,
        data_root: str | Path,
        state_file: str | Path,
        areas: Areas | None = None,
    ):
        self.data_root = Path(data_root)
        self.state_file = Path(state_file)
        self._lock = threading.Lock()
        self._rebuild_lock = threading.Lock()  # one rebuild of damaged records at a time
        self._secret_lock, self._secret = threading.Lock(), b""
        # users' areas: with per-user accounts endpoints run as their owner, and the service
        # reaches their models as the owner (through the privileged helper)
        self.areas = areas or Areas(self.data_root)

    @classmethod
    def from_workbench(cls, workbench: Any) -> LocalEndpointBackend:
        return cls(
            workbench.shared_data,
            workbench.service_dir / "endpoints.json",
            areas=Areas(workbench.shared_data, workbench),
        )

    # -- the owners' side ------------------------------------------------------------------
    def _owners_uid(self) -> Callable[[str], int | None] | None:
        """owner -> the uid their endpoint processes run as (None without accounts)."""
        return self.areas.uid_of if self.areas.separate else None

    def _versions(self, owner: str, base: str | Path) -> dict[int, Path]:
        """The versions in an endpoint's model folder, looked at as its owner."""
        files = self.areas.of(owner)
        try:
            return versions_of(files, Path(base).relative_to(files.area))
        except (ValueError, UnsafeEntry, OSError):
            return {}

    def _key(self, base: str, name: str, port: int) -> str:
        """The key the gateway sends to the endpoint process serving ``base`` on ``port``:
        an HMAC under the service's own secret (<data dir>/service, never in a user's reach)."""
        with self._secret_lock:
            if not self._secret:
                path = self.state_file.with_name("endpoints.secret")
                with contextlib.suppress(FileNotFoundError):
                    self._secret = path.read_bytes()
                if len(self._secret) < 32:  # missing or cut short: a new one
                    write_text(path, secrets.token_hex(32), mode=0o600)
                    self._secret = path.read_bytes()
            secret = self._secret
        message = f"{base}\n{name}\n{port}".encode()
        return hmac.new(secret, message, hashlib.sha256).hexdigest()

    def _terminate(self, record: dict[str, Any], grace: float = 10) -> None:
        """SIGTERM the endpoint's process group, SIGKILL it after ``grace`` seconds; sent
        with its owner's rights (only their processes can be reached)."""
        if not alive(record):
            return
        files = self.areas.of(record["owner"])
        try:
            files.signal(record["pid"], signal.SIGTERM, group=True)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and alive(record):
                time.sleep(0.05)
            if alive(record):
                files.signal(record["pid"], signal.SIGKILL, group=True)
        except (OSError, UnsafeEntry) as e:
            log.error("Endpoint process %s not stopped: %s", record.get("pid"), e)

    # -- records ------------------------------------------------------------------------
    def _records(self) -> dict[str, dict[str, Any]]:
        """The endpoint records; damaged ones are rebuilt from what runs (see _rebuild)."""
        try:
            records = read_json(self.state_file, {}) or {}
        except DamagedStateFile:
            return self._rebuild()
        return records if isinstance(records, dict) else self._rebuild()

    def _rebuild(self) -> dict[str, dict[str, Any]]:
        """Damaged records: keep the file aside (``endpoints.json.damaged-<time>``) and write
        records rebuilt from the running endpoint processes and the model folders they serve,
        so every running endpoint keeps answering and stays listed and undeployable."""
        with self._rebuild_lock:
            try:  # another thread may have rebuilt them while this one waited
                records = read_json(self.state_file, {}) or {}
                if isinstance(records, dict):
                    return records
            except DamagedStateFile:
                pass
            kept = keep_aside(self.state_file)
            starting = {s["pid"] for s in self._starting()}
            found = running_endpoints(self.data_root, self._owners_uid(), self._key)
            records = newest_by_endpoint([r for r in found if r["pid"] not in starting])
            restarted = self._restart_lost(records, kept.read_bytes())
            self._save(records)  # readers see the damaged file or the rebuilt one, never none
            log.error(
                "%s was damaged; it was kept as %s and the endpoint records were rebuilt: "
                "%s from their running processes, %s restarted from their model folders. An "
                "endpoint missing from both is deployed again with `hubforge serve deploy` "
                "(its versions are still in the owner's models/ folder)",
                self.state_file,
                kept,
                ", ".join(sorted(set(records) - set(restarted))) or "none",
                ", ".join(restarted) or "none",
            )
            return records

    def _restart_lost(self, records: dict[str, dict[str, Any]], damaged: bytes) -> list[str]:
        """Start the endpoints the damaged file still names whose process is gone and whose
        model folder has versions (as restore() does after a restart); their keys."""
        restarted = []
        for owner, name in mentioned(damaged):
            key, base = f"{owner}/{name}", self.area(owner) / "models" / name
            if key in records or not self._versions(owner, base):
                continue
            try:
                records[key] = self._start(owner, name, base)
            except (UnsafeEntry, ServingError, OSError, RuntimeError) as e:
                log.error("Endpoint %s not restarted: %s", key, e)
                continue
            restarted.append(key)
        return restarted

    def _save(self, records: dict[str, dict[str, Any]]) -> None:
        write_json(self.state_file, records)

    def get(self, owner: str, name: str) -> dict[str, Any]:
        record = self._records().get(f"{owner}/{name}")
        if record is None:
            raise NotFound(f"No endpoint {name!r} for {owner}; `hubforge serve list` shows yours")
        return {
            "batching": check_batching(None),
            **_public(record),
            "running": alive(record),
            "versions": sorted(self._versions(owner, record["base_path"])),
        }

    def list(self, owner: str) -> list[dict[str, Any]]:
        return [self.get(owner, r["name"]) for r in self._records().values() if r["owner"] == owner]

    # -- deploy / undeploy -----------------------------------------------------------------
    def deploy(
        self,
        owner: str,
        name: str,
        model_dir: str,
        version: int | None = None,
        batching: dict[str, Any] | None = None,
        gpus: int = 0,
    ) -> dict[str, Any]:
        """Copy the export in as a new version; start the endpoint or let it swap versions.

        ``batching`` given and different from the running endpoint's: a new process starts
        with it, takes over once the version answers, and the old one stops a little later
        (requests already sent to it finish)."""
        if gpus:
            raise BadRequest(
                "Local endpoints run on the CPU (GPUs here go to servers and jobs): "
                "deploy with gpus=0"
            )
        settings = check_batching(batching) if batching is not None else None
        # copied as the owner (their account made on first use), served by their process
        self.areas.prepare(owner)
        files = self.areas.of(owner)
        base, version = self.add_version(owner, name, model_dir, version, files)
        try:
            added = files.resolve(os.path.abspath(model_dir)) != files.resolve(base / str(version))
        except (OSError, UnsafeEntry):  # changed meanwhile: a failed deploy removes nothing
            added = False
        try:
            try:
                return self._deploy(owner, name, base, version, settings)
            except UnsafeEntry as e:  # server.log is a link: nothing is written through it
                raise BadRequest(f"Not deployed: {e}") from None
        except ServingError:
            if added:  # the deploy changed nothing: the version it copied in goes again
                with contextlib.suppress(OSError, UnsafeEntry):
                    files.remove(Path("models", name, str(version)))
            raise

    def _deploy(
        self,
        owner: str,
        name: str,
        base: Path,
        version: int,
        settings: dict[str, Any] | None,
    ) -> dict[str, Any]:
        with self._lock:
            record = self._records().get(f"{owner}/{name}")
            running = record is not None and alive(record)
            current = record.get("batching") if record else None
            wanted = settings or check_batching(current)
            if running and wanted == check_batching(current):
                self._wait_version(record, version)
                return self.get(owner, name)
            new = self._start(owner, name, base, wanted)
            self._starting(add=new)  # a service killed from here on: restore() stops it
            try:
                self._wait_version(new, version)
            except ServingError:
                self._terminate(new)
                raise
            finally:
                self._starting(remove=new)
            records = self._records()
            records[f"{owner}/{name}"] = new
            self._save(records)
        if running:  # hand over: let requests in flight on the old process finish
            timer = threading.Timer(10, self._terminate, args=(record,))
            timer.daemon = True
            timer.start()
        return self.get(owner, name)

    def _start(
        self, owner: str, name: str, base: Path, batching: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        batching = check_batching(batching)
        port = free_port()
        args = [
            "--model-name",
            name,
            "--model-base-path",
            str(base),
            "--rest_api_port",
            str(port),
            "--poll",
            "1",
            "--max-batch-size",
            str(batching["max_batch_size"]),
            "--batch-timeout-ms",
            str(batching["batch_timeout_ms"]),
        ]
        # only the gateway sends it (see server.GatewayOnly); derived from the service's
        # secret, so records rebuilt from the processes' arguments have it too
        key = self._key(str(base), name, port)
        env = workload_env(TF_CPP_MIN_LOG_LEVEL="2", HOME=str(base), **{KEY_ENV: key})
        if os.environ.get(MARKER):  # stopped with the workbench (hubforge down)
            env[MARKER] = os.environ[MARKER]
        files = self.areas.of(owner)
        process = files.spawn(
            "endpoint", args, Path(base).relative_to(files.area) / "server.log", env=env
        )
        return {
            "owner": owner,
            "name": name,
            "base_path": str(base),
            "port": port,
            "key": key,
            "batching": batching,
            **process,
            "created": time.time(),
        }

    def _wait_version(self, record: dict[str, Any], version: int, timeout: float = 120) -> None:
        """Until the server serves ``version`` (loaded, warmed up); BadRequest with the
        server's error when it failed to load (the version serving before keeps serving)."""
        url = f"http://127.0.0.1:{record['port']}/v1/models/{record['name']}/versions/{version}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(record):
                raise ServingError(
                    f"The endpoint process exited; see {record['base_path']}/server.log"
                )
            try:
                r = requests.get(url, headers=_key_header(record), timeout=5)
            except requests.RequestException:
                r = None
            if r is not None and r.status_code == 200:
                (state,) = r.json()["model_version_status"]
                if state["state"] == "AVAILABLE":
                    return
                raise BadRequest(
                    f"{state['status']['error_message']}. It was not deployed; "
                    "the endpoint serves what it served before"
                )
            time.sleep(0.1)
        raise ServingError(f"Version {version} did not load within {timeout:.0f} s")

    def keep_requests(self, owner: str, name: str, filename: str, data: bytes) -> None:
        files = self.areas.of(owner)  # as the owner: their file, in their area only
        files.mkdirs(Path("models", name, "requests"), mode=0o700)
        files.write(Path("models", name, "requests", filename), data, mode=0o600)

    # -- canary rollouts (serving.rollout): the stable version pinned by a label -----------
    def _labels(self, owner: str, name: str) -> dict[str, int]:
        files = self.areas.of(owner)
        relative = Path("models", name, LABELS_FILE)
        try:
            fd = files.open(relative)
        except FileNotFoundError:
            return {}
        except (OSError, UnsafeEntry) as e:
            raise BadRequest(f"{name}'s {LABELS_FILE} cannot be read: {e}") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(65537)
        try:
            labels = json.loads(data or b"{}")
        except (ValueError, RecursionError):
            labels = None
        if len(data) > 65536 or not isinstance(labels, dict):
            raise BadRequest(
                f"{name}'s {LABELS_FILE} is not a JSON object of labels (at most 64 KiB): fix "
                "or remove it, then deploy again"
            )
        return labels

    def _write_labels(self, owner: str, name: str, labels: dict[str, int]) -> None:
        files = self.areas.of(owner)
        data = json.dumps(labels, indent=2).encode()
        files.write(Path("models", name, LABELS_FILE), data, mode=0o644)

    def begin_canary(self, owner: str, name: str) -> int:
        try:
            record = self.get(owner, name)
        except NotFound:
            record = {"running": False, "versions": []}
        if not record["running"] or not record["versions"]:
            raise BadRequest(
                f"{name} serves no version now: a canary is compared with the version it "
                "serves; deploy without canary first"
            )
        stable = max(record["versions"])
        self._write_labels(owner, name, {**self._labels(owner, name), STABLE_LABEL: stable})
        return stable

    def end_canary(self, owner: str, name: str, canary: int, promoted: bool) -> None:
        files = self.areas.of(owner)
        if not promoted:  # kept aside (not a version any more), then no longer served
            folder = Path("models", name, str(canary))
            aside = Path("models", name, f".rolled-back-{canary}-{secrets.token_hex(4)}")
            try:
                files.copy(files.area / folder, aside)
                files.remove(folder)
            except (OSError, UnsafeEntry) as e:
                # the stable version keeps its label (served) and the gateway sends every
                # call that names no version to it: the canary is only reached by its number
                log.error("Endpoint %s/%s: version %s not put aside: %s", owner, name, canary, e)
                with contextlib.suppress(OSError, UnsafeEntry):
                    files.remove(aside)
                return
        labels = self._labels(owner, name)
        labels.pop(STABLE_LABEL, None)
        self._write_labels(owner, name, labels)

    def undeploy(self, owner: str, name: str) -> dict[str, Any]:
        with self._lock:
            records = self._records()
            record = records.pop(f"{owner}/{name}", None)
            if record is None:
                raise NotFound(f"No endpoint {name!r} for {owner}")
            self._save(records)
        self._terminate(record)
        return {**_public(record), "running": False}

    def _starting(
        self, add: dict[str, Any] | None = None, remove: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Endpoint processes started by a deploy that has not finished (kept on disk). A
        damaged list is kept aside and starts empty: restore() finds what it listed by the
        processes' arguments."""
        path = self.state_file.with_name("endpoints-starting.json")
        try:
            starting = read_json(path, []) or []
        except DamagedStateFile:
            kept = keep_aside(path)
            log.error("%s was damaged (kept as %s); it starts empty", path, kept)
            write_json(path, [])
            starting = []
        if add is not None:
            starting.append(add)
        if remove is not None:
            starting = [s for s in starting if s["pid"] != remove["pid"]]
        if add is not None or remove is not None:
            write_json(path, starting)
        return starting

    def restore(self) -> list[str]:
        """Restart endpoints whose process is gone (after a service or hub restart); stop
        processes of deploys the service died in the middle of (nothing else lists them);
        adopt or stop endpoint processes no record names."""
        restarted = []
        for orphan in self._starting():
            log.info("Stopping endpoint process %s of a deploy that never finished", orphan)
            self._terminate(orphan)
            self._starting(remove=orphan)
        with self._lock:
            records = self._records()
            self._adopt_or_stop(records)
            for key, record in records.items():
                if not alive(record) and self._versions(record["owner"], record["base_path"]):
                    try:
                        records[key] = self._start(
                            record["owner"],
                            record["name"],
                            Path(record["base_path"]),
                            record.get("batching"),
                        )
                    except UnsafeEntry as e:  # its owner made server.log a link: not started
                        log.error("Endpoint %s not restarted: %s", key, e)
                        continue
                    restarted.append(key)
            self._save(records)
        return restarted

    def _adopt_or_stop(self, records: dict[str, dict[str, Any]]) -> None:
        """Endpoint processes no record names (records lost or moved aside by hand, a
        hand-over the service died in): the newest one of an endpoint without a running
        process becomes its record; the others are stopped, so none is left orphaned."""
        for found in reversed(running_endpoints(self.data_root, self._owners_uid(), self._key)):
            key = f"{found['owner']}/{found['name']}"
            record = records.get(key)
            if record is not None and record.get("pid") == found["pid"] and alive(record):
                continue
            if record is None or not alive(record):
                log.warning("Endpoint %s: adopting its running process %s", key, found["pid"])
                records[key] = found
            else:
                log.warning("Endpoint %s: stopping stray process %s", key, found["pid"])
                self._terminate(found)

    def target(self, owner: str, name: str) -> str:
        """Where the gateway forwards requests for an endpoint."""
        record = self.get(owner, name)
        if not record["running"]:
            raise ServingError(f"Endpoint {name} is not running; redeploy it")
        return f"http://127.0.0.1:{record['port']}"

    def gateway_headers(self, owner: str, name: str) -> dict[str, str]:
        return _key_header(self._records().get(f"{owner}/{name}") or {})

    def route(self, owner: str, name: str) -> tuple[str, dict[str, str]]:
        record = self._records().get(f"{owner}/{name}")  # one read: one process's port and key
        if record is None:
            raise NotFound(f"No endpoint {name!r} for {owner}; `hubforge serve list` shows yours")
        if not alive(record):
            raise ServingError(f"Endpoint {name} is not running; redeploy it")
        return f"http://127.0.0.1:{record['port']}", _key_header(record)


def _key_header(record: dict[str, Any]) -> dict[str, str]:
    """The header an endpoint process wants from the gateway (none for records made before
    endpoints had keys: those processes answer without one until redeployed)."""
    return {KEY_HEADER: record["key"]} if record.get("key") else {}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as its owner sees it: without the gateway's key."""
    return {k: v for k, v in record.items() if k != "key"}
