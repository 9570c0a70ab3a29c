"""Local endpoints: serving processes (one per copy) run by the hubforge service.

An endpoint's record describes its first process at the top level and the other copies in
``others`` (each a process record of its own: port, gateway key, pid); ``replicas`` holds
the settings (serving.base.check_replicas). The service's supervisor pass restarts copies
that died and scales between min and max on the gateway's requests in flight.

Models live in TF Serving's layout in the owner's data area
(``users/<owner>/models/<name>/<version>/``); the records of running endpoints live in the
service's state folder, so a service or hub restart brings every endpoint back.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
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
from ..processes import MARKER, alive, free_port, listening_uids, workload_env
from .base import EndpointBackend, check_batching, check_replicas, versions_of
from .errors import BadRequest, NotFound, ServingError, Unavailable
from .pinning import StablePin
from .recovery import keep_aside, mentioned, newest_by_endpoint, running_endpoints
from .server import KEY_ENV, KEY_HEADER

log = logging.getLogger(__name__)

PROCESS_ONLY = ("others", "replicas", "generation")  # record keys no single process has
HEALTH_EVERY, HEALTH_TIMEOUT, HEALTH_STRIKES = 5.0, 5.0, 3  # a copy that stopped answering
CRASH_WINDOW = 60.0  # a copy that dies sooner after its start counts as a failed start


def processes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process of an endpoint's record, the first one first."""
    first = {k: v for k, v in record.items() if k not in PROCESS_ONLY}
    return [first, *record.get("others", [])]


def combined(procs: list[dict[str, Any]], like: dict[str, Any]) -> dict[str, Any]:
    """The record of ``procs`` (at least one) with ``like``'s settings and generation."""
    record = {**procs[0], "others": list(procs[1:])}
    for key in ("replicas", "generation"):
        if key in like:
            record[key] = like[key]
    return record


def settings_of(record: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's replica settings (records from before replicas: one copy)."""
    return record.get("replicas") or check_replicas(None, 1)


class LocalEndpointBackend(StablePin, EndpointBackend):
    def __init__(
        self,
        data_root: str | Path,
        state_file: str | Path,
        areas: Areas | None = None,
        max_replicas: int = 4,
        health_every: float = HEALTH_EVERY,
    ):
        self.data_root = Path(data_root)
        self.max_replicas = max_replicas
        self.health_every = health_every
        # copies that failed to start: (failures, next try) per endpoint, so a broken
        # model is not started again every second
        self._backoff: dict[str, tuple[int, float]] = {}
        # copies' health checks: (failures in a row, when last asked); those being stopped
        self._health: dict[tuple[int, float], tuple[int, float]] = {}
        self._stuck: set[tuple[int, float]] = set()
        self._crashed: set[tuple[int, float]] = set()  # early deaths already counted
        self._supervise_lock, self._supervising = threading.Lock(), set()  # endpoints at work
        self._endpoint_locks: dict[str, threading.Lock] = {}
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
            max_replicas=workbench.max_endpoint_replicas,
            health_every=workbench.endpoint_health_interval,
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

    def _terminate_all(self, procs: list[dict[str, Any]], grace: float = 10) -> None:
        """Stop several processes at once (each gets its grace, side by side)."""
        threads = [
            threading.Thread(target=self._terminate, args=(p, grace), daemon=True) for p in procs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _terminate_later(self, procs: list[dict[str, Any]], delay: float = 10) -> None:
        """Stop processes a little later: requests already sent to them finish."""
        if procs:
            timer = threading.Timer(delay, self._terminate_all, args=(procs,))
            timer.daemon = True
            timer.start()

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
            records = self._grouped([r for r in found if r["pid"] not in starting])
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

    def _grouped(self, found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Records rebuilt from running processes: an endpoint's newest process, with the
        other copies serving the same folder with the same batching beside it (at most
        max_replicas in all)."""
        records = newest_by_endpoint(found)
        for key, newest in list(records.items()):
            same = [
                f
                for f in found
                if f"{f['owner']}/{f['name']}" == key
                and f["pid"] != newest["pid"]
                and (f["base_path"], f["batching"]) == (newest["base_path"], newest["batching"])
            ]
            same = (
                same[max(0, len(same) - (self.max_replicas - 1)) :] if self.max_replicas > 1 else []
            )
            count = 1 + len(same)
            records[key] = combined(
                [newest, *same], {"replicas": check_replicas(count, self.max_replicas)}
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
        live = [p for p in processes(record) if alive(p)]
        return {
            "batching": check_batching(None),
            **_public(record),
            "running": bool(live),
            "ready": len(live),
            "replicas": settings_of(record),
            "processes": [
                {"pid": p["pid"], "port": p["port"], "running": p in live}
                for p in processes(record)
            ],
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
        replicas: dict[str, Any] | int | None = None,
    ) -> dict[str, Any]:
        """Copy the export in as a new version; start the endpoint or let it swap versions.

        ``batching`` given and different from the running endpoint's: new processes start
        with it, take over once the version answers, and the old ones stop a little later
        (requests already sent to them finish). ``replicas``: copies started or stopped to
        match (None: as the endpoint has them)."""
        if gpus:
            raise BadRequest(
                "Local endpoints run on the CPU (GPUs here go to servers and jobs): "
                "deploy with gpus=0"
            )
        settings = check_batching(batching) if batching is not None else None
        copies = check_replicas(replicas, self.max_replicas) if replicas is not None else None
        if copies is not None and copies["target_cpu"] is not None:
            raise BadRequest(
                "replicas.target_cpu: endpoints on this machine scale on the calls in flight "
                "at the gateway; give replicas.target_concurrency (calls per copy) instead"
            )
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
                return self._deploy(owner, name, base, version, settings, copies)
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
        copies: dict[str, Any] | None,
    ) -> dict[str, Any]:
        key = f"{owner}/{name}"
        # this endpoint's deploys, supervision and undeploy take turns; other endpoints'
        # go on meanwhile (the records' lock is held only to read and to write them)
        with self._endpoint_lock(key):
            with self._lock:
                record = self._records().get(key)
            live = [p for p in processes(record) if alive(p)] if record else []
            current = record.get("batching") if record else None
            wanted = settings or check_batching(current)
            copies = copies or (settings_of(record) if record else check_replicas(None, 1))
            count = min(max(len(live), copies["min"]), copies["max"])
            if live and wanted == check_batching(current):
                for proc in live:
                    self._wait_version(proc, version)
                keep, extra = live[:count], live[count:]
                keep += self._started(owner, name, base, wanted, version, count - len(keep))
                old = []
            else:  # new processes take over from the old ones (if any)
                keep, extra = self._started(owner, name, base, wanted, version, count), []
                old = live
            with self._lock:
                records = self._records()
                generation = {"replicas": copies, "generation": secrets.token_hex(4)}
                records[key] = combined(keep, generation)
                self._save(records)
            self._backoff.pop(key, None)
        # requests in flight on the processes handed over from finish first
        self._terminate_later(old + extra)
        return self.get(owner, name)

    def _started(
        self,
        owner: str,
        name: str,
        base: Path,
        batching: dict[str, Any],
        version: int | None,
        count: int,
    ) -> list[dict[str, Any]]:
        """``count`` new processes serving ``version`` (None: any), started side by side;
        none left running when one fails."""
        new: list[dict[str, Any]] = []
        try:
            for _ in range(count):
                proc = self._start(owner, name, base, batching)
                new.append(proc)
                self._starting(add=proc)  # a service killed from here on: restore() stops it
            for proc in new:
                self._wait_version(proc, version)
        except BaseException:
            self._terminate_all(new)
            raise
        finally:
            for proc in new:
                self._starting(remove=proc)
        return new

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

    def _wait_version(
        self, record: dict[str, Any], version: int | None, timeout: float = 120
    ) -> None:
        """Until the server serves ``version`` (loaded, warmed up; None: the newest one);
        BadRequest with the server's error when it failed to load (the version serving
        before keeps serving). The key goes only to a port that the owner's account
        listens on (another account that took the port first never sees it)."""
        url = f"http://127.0.0.1:{record['port']}/v1/models/{record['name']}"
        if version is not None:
            url += f"/versions/{version}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(record):
                raise ServingError(
                    f"The endpoint process exited; see {record['base_path']}/server.log"
                )
            if self._listener_checked(record):
                states = _version_states(url, record)
                if any(s.get("state") == "AVAILABLE" for s in states):
                    return
                failed = [s for s in states if (s.get("status") or {}).get("error_message")]
                if failed and (version is not None or len(failed) == len(states)):
                    raise BadRequest(
                        f"{failed[0]['status']['error_message']}. It was not deployed; "
                        "the endpoint serves what it served before"
                    )
            time.sleep(0.1)
        raise ServingError(f"Version {version} did not load within {timeout:.0f} s")

    def _listener_checked(self, record: dict[str, Any]) -> bool:
        """Whether the process's port listens, as its owner's account (False: not yet);
        ServingError when another account holds it."""
        uids = listening_uids(record["port"])
        if not uids:
            return False
        owner_uid = self.areas.uid_of(record["owner"]) if self.areas.separate else None
        expected = owner_uid if owner_uid is not None else os.geteuid()
        if uids != {expected}:
            raise ServingError(
                f"Port {record['port']} of a new copy of {record['name']} is held by another "
                "account: not started (deploy again; another port is chosen)"
            )
        return True

    def keep_requests(self, owner: str, name: str, filename: str, data: bytes) -> None:
        files = self.areas.of(owner)  # as the owner: their file, in their area only
        files.mkdirs(Path("models", name, "requests"), mode=0o700)
        files.write(Path("models", name, "requests", filename), data, mode=0o600)

    def owner_files(self, owner: str) -> Any:
        return self.areas.of(owner)  # as the owner: their account, their rights

    def _endpoint_lock(self, key: str) -> threading.Lock:
        with self._supervise_lock:
            return self._endpoint_locks.setdefault(key, threading.Lock())

    def undeploy(self, owner: str, name: str) -> dict[str, Any]:
        with self._endpoint_lock(f"{owner}/{name}"), self._lock:
            records = self._records()
            record = records.pop(f"{owner}/{name}", None)
            if record is None:
                raise NotFound(f"No endpoint {name!r} for {owner}")
            self._save(records)
        self._terminate_all(processes(record))
        return {**_public(record), "running": False, "ready": 0}

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
        """Restart endpoints' processes that are gone (after a service or hub restart); stop
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
                procs = processes(record)
                if all(alive(p) for p in procs):
                    continue
                if not self._versions(record["owner"], record["base_path"]):
                    continue
                kept = [p for p in procs if alive(p)]
                try:
                    kept += [self._restart(record) for p in procs if not alive(p)]
                except UnsafeEntry as e:  # its owner made server.log a link: not started
                    log.error("Endpoint %s not restarted: %s", key, e)
                if kept:
                    records[key] = combined(kept, record)
                    restarted.append(key)
            self._save(records)
        return restarted

    def _restart(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._start(
            record["owner"], record["name"], Path(record["base_path"]), record.get("batching")
        )

    def _adopt_or_stop(self, records: dict[str, dict[str, Any]]) -> None:
        """Endpoint processes no record names (records lost or moved aside by hand, a
        hand-over the service died in): the newest copies of an endpoint without a running
        process become its record; the others are stopped, so none is left orphaned."""
        found = running_endpoints(self.data_root, self._owners_uid(), self._key)
        grouped = self._grouped(found)
        for key, group in grouped.items():
            record = records.get(key)
            known = {p["pid"] for p in processes(record) if alive(p)} if record else set()
            strays = [f for f in found if f"{f['owner']}/{f['name']}" == key]
            strays = [f for f in strays if f["pid"] not in known]
            if strays and not known:
                adopted = processes(group)[: settings_of(record)["max"] if record else None]
                log.warning(
                    "Endpoint %s: adopting its running processes %s",
                    key,
                    [p["pid"] for p in adopted],
                )
                records[key] = combined(adopted, record or group)
                strays = [f for f in strays if f not in adopted]
            for stray in strays:
                log.warning("Endpoint %s: stopping stray process %s", key, stray["pid"])
                self._terminate(stray)

    # -- copies kept running and scaled (the service's supervisor pass) ---------------------
    def supervise(self, wanted: Callable[[str, str, dict[str, Any], int], int]) -> list[str]:
        """Restart endpoints' processes that died or hang and start or stop copies towards
        ``wanted(owner, name, settings, copies now)`` (within the settings' min and max).
        Each endpoint in a thread of its own, one at a time per endpoint: a copy that takes
        seconds to start (or a health check that waits) holds up no other endpoint. What it
        did goes to the log; new copies join once they serve."""
        with self._lock:
            records = self._records()
        for key, record in records.items():
            with self._supervise_lock:
                if key in self._supervising:
                    continue
                self._supervising.add(key)
            threading.Thread(
                target=self._supervise_in_turn, args=(key, record, wanted), daemon=True
            ).start()
        known = {_identity(p) for r in records.values() for p in processes(r)}
        for ident in set(self._health) - known:  # processes gone: their checks too
            self._health.pop(ident, None)
        self._crashed &= known
        return []

    def _supervise_in_turn(
        self, key: str, record: dict[str, Any], wanted: Callable[..., int]
    ) -> None:
        lock = self._endpoint_lock(key)
        if not lock.acquire(blocking=False):  # a deploy or undeploy of it is under way
            with self._supervise_lock:
                self._supervising.discard(key)
            return
        try:
            with self._lock:  # as it is now that this endpoint's turn has come
                record = self._records().get(key) or {}
            line = self._supervise_one(key, record, wanted) if record else None
            if line:
                log.info("%s", line)
        except Exception as e:  # one endpoint's trouble never stops the others'
            log.exception("Endpoint %s not supervised: %s", key, e)
        finally:
            lock.release()
            with self._supervise_lock:
                self._supervising.discard(key)

    def _supervise_one(
        self,
        key: str,
        record: dict[str, Any],
        wanted: Callable[[str, str, dict[str, Any], int], int],
    ) -> str | None:
        settings, procs = settings_of(record), processes(record)
        live = [p for p in procs if alive(p) and not self._hung(key, p)]
        self._crash_loop(key, procs, live)
        count = len(procs)
        if settings["min"] < settings["max"]:
            count = wanted(record["owner"], record["name"], settings, len(live) or 1)
        count = min(max(count, settings["min"]), settings["max"])
        if len(live) == count == len(procs):
            return None
        new = self._more_copies(key, record, count - len(live))
        with self._lock:
            records = self._records()
            current = records.get(key)
            changed = current is not None and current.get("generation") == record.get("generation")
            now = [p for p in processes(current or {}) if alive(p)] if changed else []
            now = [p for p in now if _identity(p) not in self._stuck]
            keep = now + new
            stop = keep[count:] if len(keep) > count else []
            keep = keep[: max(count, 1)] if keep else []
            if changed and keep and (new or stop or len(now) < len(processes(current))):
                records[key] = combined(keep, current)
                self._save(records)
        if not changed:
            self._terminate_all(new)  # undeployed or deployed again meanwhile
            return None
        if not keep or not (new or stop or len(now) < len(processes(current))):
            return None  # nothing serves (restarted later), or nothing changed
        self._terminate_later(stop)
        dead = len(processes(current)) - len(now)
        return (
            f"Endpoint {key}: {len(keep)} copies serving"
            + (f" ({dead} that died replaced)" if dead and new else "")
            + (f", {len(new)} started" if new else "")
            + (f", {len(stop)} stopped" if stop else "")
        )

    def _crash_loop(self, key: str, procs: list[dict], live: list[dict]) -> None:
        """Copies that died within CRASH_WINDOW seconds of their start count as failed
        starts (the next start waits: 2 s doubling to 5 min); once every copy has lived
        longer than that, the endpoint starts afresh."""
        now = time.time()
        for proc in procs:
            ident = _identity(proc)
            early = now - proc.get("created", 0) < CRASH_WINDOW
            if proc not in live and early and ident not in self._crashed and not alive(proc):
                self._crashed.add(ident)
                failures, _ = self._backoff.get(key, (0, 0.0))
                delay = min(300.0, 2.0 ** (failures + 1))
                self._backoff[key] = (failures + 1, time.monotonic() + delay)
                log.warning(
                    "Endpoint %s: copy %s died %.0f s after its start; next start in %.0f s",
                    key,
                    proc["pid"],
                    now - proc.get("created", now),
                    delay,
                )
        settled = live and all(now - p.get("created", 0) > CRASH_WINDOW for p in live)
        if settled and key in self._backoff and time.monotonic() > self._backoff[key][1]:
            del self._backoff[key]

    def _hung(self, key: str, proc: dict[str, Any]) -> bool:
        """Whether a running copy stopped answering: its /healthz is asked every
        ``health_every`` seconds (Workbench.endpoint_health_interval), and HEALTH_STRIKES
        failures in a row (timeouts of HEALTH_TIMEOUT, or twice the interval when shorter)
        get it stopped (its calls are sent to another copy) and replaced."""
        ident = _identity(proc)
        if ident in self._stuck:
            return True
        strikes, last = self._health.get(ident, (0, 0.0))
        now = time.monotonic()
        if now - last < self.health_every:
            return False
        try:
            url = f"http://127.0.0.1:{proc['port']}/healthz"
            # (a check every second waits 2 s at most; every 5 s or more, HEALTH_TIMEOUT)
            wait = min(HEALTH_TIMEOUT, max(2.0, 2 * self.health_every))
            ok = requests.get(url, headers=_key_header(proc), timeout=wait).ok
        except requests.RequestException:
            ok = False
        strikes = 0 if ok else strikes + 1
        self._health[ident] = (strikes, time.monotonic())
        if strikes < HEALTH_STRIKES:
            return False
        log.warning(
            "Endpoint %s: copy %s has not answered its health check %d times: replaced",
            key,
            proc["pid"],
            strikes,
        )
        self._stuck.add(ident)
        self._health.pop(ident, None)
        threading.Thread(target=self._stop_stuck, args=(proc,), daemon=True).start()
        return True

    def _stop_stuck(self, proc: dict[str, Any]) -> None:
        self._terminate(proc, grace=2)
        self._stuck.discard(_identity(proc))

    def copies(self) -> list[dict[str, Any]]:
        """Every running endpoint process: owner, name, pid, create_time, and the URL and
        headers to reach it (the service reads their batch sizes: serving.batch_sizes)."""
        found = []
        for record in self._records().values():
            for proc in processes(record):
                if alive(proc):
                    found.append(
                        {
                            "owner": record["owner"],
                            "name": record["name"],
                            "pid": proc["pid"],
                            "create_time": proc["create_time"],
                            "url": f"http://127.0.0.1:{proc['port']}",
                            "headers": _key_header(proc),
                        }
                    )
        return found

    def _more_copies(self, key: str, record: dict[str, Any], starts: int) -> list[dict]:
        """``starts`` new copies serving (none while a failed start's backoff lasts: 2 s,
        doubling to 5 min, or when the model folder has no version left)."""
        failures, next_try = self._backoff.get(key, (0, 0.0))
        if starts <= 0 or time.monotonic() < next_try:
            return []
        if not self._versions(record["owner"], record["base_path"]):
            return []
        try:
            return self._started(
                record["owner"],
                record["name"],
                Path(record["base_path"]),
                check_batching(record.get("batching")),
                None,
                starts,
            )
        except (ServingError, UnsafeEntry, OSError, RuntimeError) as e:
            delay = min(300.0, 2.0 ** (failures + 1))
            self._backoff[key] = (failures + 1, time.monotonic() + delay)
            log.error("Endpoint %s: a copy did not start (%s); next try in %.0f s", key, e, delay)
            return []

    # -- the gateway's side -------------------------------------------------------------
    def target(self, owner: str, name: str) -> str:
        """Where the gateway forwards requests for an endpoint."""
        return self.route(owner, name)[0]

    def gateway_headers(self, owner: str, name: str) -> dict[str, str]:
        return self.route(owner, name)[1]

    def route(self, owner: str, name: str) -> tuple[str, dict[str, str]]:
        return self.routes(owner, name)[0]

    def routes(self, owner: str, name: str) -> list[tuple[str, dict[str, str]]]:
        record = self._records().get(f"{owner}/{name}")  # one read: ports and keys together
        if record is None:
            raise NotFound(f"No endpoint {name!r} for {owner}; `hubforge serve list` shows yours")
        live = [p for p in processes(record) if alive(p)]
        if not live:
            raise Unavailable(
                f"Endpoint {name} is not running: its processes are being started again; "
                "retry in a few seconds (or redeploy it)"
            )
        return [(f"http://127.0.0.1:{p['port']}", _key_header(p)) for p in live]


def _version_states(url: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The version states a server answers at ``url`` (none while it does not answer, or
    answers something else)."""
    try:
        r = requests.get(url, headers=_key_header(record), timeout=5)
        states = r.json().get("model_version_status") if r.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return []
    return [s for s in states if isinstance(s, dict)] if isinstance(states, list) else []


def _identity(proc: dict[str, Any]) -> tuple[int, float]:
    return proc["pid"], proc["create_time"]


def _key_header(record: dict[str, Any]) -> dict[str, str]:
    """The header an endpoint process wants from the gateway (none for records made before
    endpoints had keys: those processes answer without one until redeployed)."""
    return {KEY_HEADER: record["key"]} if record.get("key") else {}


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as its owner sees it: without the gateway's keys."""
    return {k: v for k, v in record.items() if k not in ("key", "others", "generation")}
