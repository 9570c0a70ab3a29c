"""Local endpoints: one serving process per endpoint, run by the hubforge service.

Models live in TF Serving's layout in the owner's data area
(``users/<owner>/models/<name>/<version>/``); the records of running endpoints live in the
service's state folder, so a service or hub restart brings every endpoint back.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from ..atomic import read_json, write_json
from ..processes import alive, free_port, spawn_detached, terminate_group
from .errors import BadRequest, NotFound, ServingError
from .model import find_versions

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class LocalEndpointBackend:
    def __init__(self, data_root: str | Path, state_file: str | Path):
        self.data_root = Path(data_root)
        self.state_file = Path(state_file)
        self._lock = threading.Lock()

    @classmethod
    def from_workbench(cls, workbench: Any) -> LocalEndpointBackend:
        return cls(workbench.shared_data, workbench.state_dir / "endpoints.json")

    # -- records ------------------------------------------------------------------------
    def _records(self) -> dict[str, dict[str, Any]]:
        return read_json(self.state_file, {}) or {}

    def _save(self, records: dict[str, dict[str, Any]]) -> None:
        write_json(self.state_file, records)

    def area(self, owner: str) -> Path:
        return self.data_root / "users" / owner

    def get(self, owner: str, name: str) -> dict[str, Any]:
        record = self._records().get(f"{owner}/{name}")
        if record is None:
            raise NotFound(f"No endpoint {name!r} for {owner}; `hubforge serve list` shows yours")
        return {
            **record,
            "running": alive(record),
            "versions": sorted(find_versions(record["base_path"])),
        }

    def list(self, owner: str) -> list[dict[str, Any]]:
        return [self.get(owner, r["name"]) for r in self._records().values() if r["owner"] == owner]

    # -- deploy / undeploy -----------------------------------------------------------------
    def _export_dir(self, owner: str, model_dir: str) -> Path:
        path = Path(model_dir).resolve()
        area = self.area(owner).resolve()
        if area not in path.parents:
            raise BadRequest(
                f"{model_dir} is outside your data area {area}: deploy what a job "
                "exported (its model folder) or copy the model there"
            )
        if not (path / "saved_model.pb").is_file():
            raise BadRequest(
                f"{model_dir} is not a SavedModel (no saved_model.pb): pass the "
                "folder model.save() wrote"
            )
        return path

    def deploy(
        self, owner: str, name: str, model_dir: str, version: int | None = None
    ) -> dict[str, Any]:
        """Copy the export in as a new version; start the endpoint or let it swap versions."""
        if not isinstance(name, str) or not NAME.match(name):
            raise BadRequest(f"Endpoint name {name!r}: use lowercase letters, digits and '-'")
        source = self._export_dir(owner, model_dir)
        base = self.area(owner) / "models" / name
        base.mkdir(parents=True, exist_ok=True)
        existing = find_versions(base)
        version = version or (max(existing) + 1 if existing else 1)
        if not isinstance(version, int) or version < 1:
            raise BadRequest(f"version={version!r}: a positive integer")
        if version in existing and existing[version].resolve() != source:
            raise BadRequest(
                f"Version {version} of {name} exists already; omit version= to add the next one"
            )
        if source != base / str(version):
            tmp = base / f".incoming-{version}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            tmp.rename(base / str(version))  # the server only sees complete versions
        with self._lock:
            records = self._records()
            record = records.get(f"{owner}/{name}")
            if record is None or not alive(record):
                record = self._start(owner, name, base)
                records[f"{owner}/{name}"] = record
                self._save(records)
        self._wait_version(record, version)
        return self.get(owner, name)

    def _start(self, owner: str, name: str, base: Path) -> dict[str, Any]:
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "hubforge.serving.server",
            "--model-name",
            name,
            "--model-base-path",
            str(base),
            "--port",
            str(port),
            "--poll",
            "1",
        ]
        process = spawn_detached(
            cmd, base / "server.log", env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        )
        return {
            "owner": owner,
            "name": name,
            "base_path": str(base),
            "port": port,
            **process,
            "created": time.time(),
        }

    def _wait_version(self, record: dict[str, Any], version: int, timeout: float = 120) -> None:
        url = f"http://127.0.0.1:{record['port']}/v1/models/{record['name']}/versions/{version}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(record):
                raise ServingError(
                    f"The endpoint process exited; see {record['base_path']}/server.log"
                )
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise ServingError(f"Version {version} did not load within {timeout:.0f} s")

    def undeploy(self, owner: str, name: str) -> dict[str, Any]:
        with self._lock:
            records = self._records()
            record = records.pop(f"{owner}/{name}", None)
            if record is None:
                raise NotFound(f"No endpoint {name!r} for {owner}")
            self._save(records)
        terminate_group(record)
        return {**record, "running": False}

    def restore(self) -> list[str]:
        """Restart endpoints whose process is gone (after a service or hub restart)."""
        restarted = []
        with self._lock:
            records = self._records()
            for key, record in records.items():
                if not alive(record) and find_versions(record["base_path"]):
                    records[key] = self._start(
                        record["owner"], record["name"], Path(record["base_path"])
                    )
                    restarted.append(key)
            self._save(records)
        return restarted

    def target(self, owner: str, name: str) -> str:
        """Where the gateway forwards requests for an endpoint."""
        record = self.get(owner, name)
        if not record["running"]:
            raise ServingError(f"Endpoint {name} is not running; redeploy it")
        return f"http://127.0.0.1:{record['port']}"
