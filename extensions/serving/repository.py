"""A model's versions on disk (TF Serving layout), loaded and swapped without dropping requests.

Served by default: the newest version plus every version a label (``labels.json``:
{"stable": 1, "canary": 2}) points to. With TF Serving's model config a ``VersionPolicy``
chooses instead (the newest N, all, or specific versions) and the labels come from the config.
A request keeps the version object it started with, so a swap never fails it; replaced
versions are dropped once nothing refers to them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadRequest, NotFound
from .model import ModelVersion, find_versions

LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's model_version_policy: ``latest`` (the newest ``num_versions``), ``all``,
    or ``specific`` (``versions``)."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = field(default=())

    def choose(self, on_disk: list[int]) -> list[int]:
        """The versions to serve of those on disk (newest first); ``latest`` counts only
        versions that load, which the repository decides as it loads them."""
        if self.kind == "all":
            return on_disk
        if self.kind == "specific":
            return [v for v in on_disk if v in self.versions]
        return on_disk[: self.num_versions]


def _stamp(path: Path) -> tuple[float, ...]:
    """Changes when a version folder's SavedModel is replaced."""
    files = [path, path / "saved_model.pb", path / "variables"]
    return tuple(f.stat().st_mtime if f.exists() else 0.0 for f in files)


class ModelRepository:
    def __init__(
        self,
        name: str,
        base_path: str | Path,
        policy: VersionPolicy | None = None,
        labels: dict[str, int] | None = None,
    ):
        self.name = name
        self.base_path = Path(base_path)
        self.policy = policy  # None: the newest that works, plus labelled versions
        self.fixed_labels = labels  # None: read labels.json
        self.versions: dict[int, ModelVersion] = {}
        self.labels: dict[str, int] = {}
        self.errors: dict[int, str] = {}
        self._failed: dict[int, tuple[float, ...]] = {}  # version -> folder stamp at failure
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def read_labels(self) -> dict[str, int]:
        if self.fixed_labels is not None:
            return dict(self.fixed_labels)
        path = self.base_path / LABELS_FILE
        if not path.exists():
            return {}
        try:
            labels = json.loads(path.read_text())
        except ValueError:
            return self.labels  # half-written: keep the last good ones
        return {str(k): int(v) for k, v in labels.items()}

    def refresh(self) -> list[int]:
        """Load what should be served, drop what should not; returns the served versions.

        Served: every labelled version and the newest version that loads and answers its
        warm-up call. A newer version that fails is reported (status END with the error) and
        never replaces the one serving; it is tried again only when its folder changes."""
        if not self._refreshing.acquire(blocking=False):  # one scan at a time
            return sorted(self.versions)
        try:
            return self._refresh()
        finally:
            self._refreshing.release()

    def _load(self, version: int, path: Path) -> ModelVersion | None:
        stamp = _stamp(path)
        if self._failed.get(version) == stamp:
            return None
        try:
            loaded = ModelVersion(path, version)
        except Exception as e:  # a broken export must not stop the others
            self.errors[version] = f"Version {version} failed to load: {e}"
            self._failed[version] = stamp
            return None
        self.errors.pop(version, None)
        self._failed.pop(version, None)
        return loaded

    def _works(self, version: int, path: Path, loaded: dict[int, ModelVersion]) -> bool:
        """Whether ``version`` is loaded, loading it into ``loaded`` when it is not yet."""
        if version not in loaded:
            model = self._load(version, path)
            if model is None:
                return False
            loaded[version] = model
        return True

    def _refresh(self) -> list[int]:
        on_disk = find_versions(self.base_path)
        labels = self.read_labels()
        for gone in set(self.errors) - set(on_disk):
            self.errors.pop(gone, None)
            self._failed.pop(gone, None)
        loaded = {v: m for v, m in self.versions.items() if v in on_disk}
        if self.policy is not None:  # TF Serving's model config: the policy alone chooses
            if self.policy.kind == "latest":  # the newest N that work
                working = []
                for version in sorted(on_disk, reverse=True):
                    if len(working) == self.policy.num_versions:
                        break
                    if self._works(version, on_disk[version], loaded):
                        working.append(version)
                wanted = set(working)
            else:
                wanted_on_disk = self.policy.choose(sorted(on_disk, reverse=True))
                for version in wanted_on_disk:
                    self._works(version, on_disk[version], loaded)
                wanted = {v for v in wanted_on_disk if v in loaded}
        else:
            for version in sorted({v for v in labels.values() if v in on_disk}):
                self._works(version, on_disk[version], loaded)
            latest = None  # the newest version that works, newest first
            for version in sorted(on_disk, reverse=True):
                if self._works(version, on_disk[version], loaded):
                    latest = version
                    break
            wanted = {v for v in labels.values() if v in loaded} | ({latest} - {None})
        with self._lock:
            self.versions = {v: m for v, m in loaded.items() if v in wanted}
            self.labels = labels
        return sorted(self.versions)

    def resolve(self, version: int | None = None, label: str | None = None) -> ModelVersion:
        with self._lock:
            versions, labels = self.versions, self.labels
        if label is not None:
            if label not in labels:  # TF Serving: 400, not 404
                raise BadRequest(
                    f"Unrecognized servable version label: {label} (model {self.name} has "
                    f"labels: {', '.join(sorted(labels)) or 'none'})"
                )
            version = labels[label]
        if version is None:
            if not versions:
                raise NotFound(
                    f"Servable not found for request: Latest({self.name}) (no version loaded yet)"
                )
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(
                f"Servable not found for request: Specific({self.name}, {version}) (model "
                f"{self.name} version {version} is not served; served: "
                f"{', '.join(map(str, sorted(versions))) or 'none'})"
            )
        return versions[version]

    def _errors_on_disk(self) -> dict[int, str]:
        """Load errors of version folders still as they were when they failed: a folder
        removed or replaced since (a fixed version deployed again at once) is not reported
        as failed before the next scan has tried it."""
        errors, failed = dict(self.errors), dict(self._failed)
        try:
            on_disk = find_versions(self.base_path)
        except NotFound:  # the model's folder is gone: so are its versions' errors
            return {}
        return {
            v: message
            for v, message in errors.items()
            if v in on_disk and failed.get(v) == _stamp(on_disk[v])
        }

    def status(self, version: int | None = None) -> dict[str, Any]:
        with self._lock:
            served = sorted(self.versions, reverse=True)
        errors = self._errors_on_disk()
        if version is not None:
            if version not in served and version not in errors:
                raise NotFound(f"Model {self.name} version {version} is not served")
            served = [version] if version in served else []
        states = [
            {
                "version": str(v),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in served
        ]
        for v, message in sorted(errors.items()):
            if version in (None, v):
                states.append(
                    {
                        "version": str(v),
                        "state": "END",
                        "status": {"error_code": "UNKNOWN", "error_message": message},
                    }
                )
        return {"model_version_status": states}

    def set_label(self, label: str, version: int) -> None:
        if version not in find_versions(self.base_path):
            raise BadRequest(f"Version {version} does not exist under {self.base_path}")
        labels = dict(self.read_labels(), **{label: version})
        from ..atomic import write_json

        write_json(self.base_path / LABELS_FILE, labels, mode=0o644)
