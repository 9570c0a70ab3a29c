"""The contract every endpoint backend (local processes, Kubernetes) implements."""

from __future__ import annotations

import errno
import os
import re
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from ..confined import UnsafeEntry, copy_tree
from ..owner_files import OwnerFiles
from .errors import BadRequest, Conflict
from .model import find_versions

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")

DEFAULT_BATCHING = {"max_batch_size": 0, "batch_timeout_ms": 2.0}


def check_batching(batching: Any) -> dict[str, Any]:
    """``{"max_batch_size": N, "batch_timeout_ms": T}`` with defaults; N 0 or 1: off."""
    if batching is None:
        return dict(DEFAULT_BATCHING)
    if not isinstance(batching, dict):
        raise BadRequest('batching: an object like {"max_batch_size": 32, "batch_timeout_ms": 2}')
    unknown = sorted(set(batching) - set(DEFAULT_BATCHING))
    if unknown:
        raise BadRequest(f"batching: unknown {unknown}; use {sorted(DEFAULT_BATCHING)}")
    result = {**DEFAULT_BATCHING, **batching}
    size, wait = result["max_batch_size"], result["batch_timeout_ms"]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 4096:
        raise BadRequest(f"batching.max_batch_size={size!r}: an integer from 0 (off) to 4096")
    if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= 1000:
        raise BadRequest(f"batching.batch_timeout_ms={wait!r}: a number of ms from 0 to 1000")
    return {"max_batch_size": size, "batch_timeout_ms": float(wait)}


DEFAULT_TARGET_CONCURRENCY = 8.0


def check_replicas(replicas: Any, limit: int) -> dict[str, Any]:
    """``replicas=N`` (N copies) or ``{"min": 1, "max": 4, "target_concurrency": 8}``
    (scaled between them: requests in flight per copy; on Kubernetes ``"target_cpu": 70``
    scales on CPU use instead), normalised to ``{"min", "max", "target_concurrency",
    "target_cpu"}``; ``limit``: the most copies one endpoint may have here."""
    if replicas is None:
        replicas = 1
    number = isinstance(replicas, int) and not isinstance(replicas, bool)
    if number:
        replicas = {"min": replicas, "max": replicas}
    if not isinstance(replicas, dict):
        raise BadRequest(
            f"replicas={replicas!r:.60}: a number of copies, or an object like "
            '{"min": 1, "max": 3, "target_concurrency": 8}'
        )
    known = {"min", "max", "target_concurrency", "target_cpu"}
    unknown = sorted(set(replicas) - known)
    if unknown:
        raise BadRequest(f"replicas: unknown {unknown}; use {sorted(known)}")
    low, high = replicas.get("min", 1), replicas.get("max", replicas.get("min", 1))
    for key, value in (("min", low), ("max", high)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise BadRequest(
                f"replicas{'' if number else '.' + key}="
                f"{value!r:.40}: a whole number of copies from 1 to {limit} here"
            )
    if low > high:
        raise BadRequest(f"replicas: min ({low}) is more than max ({high})")
    concurrency, cpu = replicas.get("target_concurrency"), replicas.get("target_cpu")
    if concurrency is not None and (
        not isinstance(concurrency, int | float)
        or isinstance(concurrency, bool)
        or not 0.1 <= concurrency <= 10000
    ):
        raise BadRequest(
            f"replicas.target_concurrency={concurrency!r:.40}: requests in flight per copy "
            "(0.1 to 10000)"
        )
    if cpu is not None and (
        not isinstance(cpu, int) or isinstance(cpu, bool) or not 1 <= cpu <= 100
    ):
        raise BadRequest(f"replicas.target_cpu={cpu!r:.40}: a CPU use in percent (1 to 100)")
    if concurrency is not None and cpu is not None:
        raise BadRequest("replicas: scale on target_concurrency or on target_cpu, not both")
    if low == high:
        concurrency = cpu = None  # a fixed number: nothing to scale on
    elif cpu is None and concurrency is None:
        concurrency = DEFAULT_TARGET_CONCURRENCY
    return {
        "min": low,
        "max": high,
        "target_concurrency": None if concurrency is None else float(concurrency),
        "target_cpu": cpu,
    }


def _no_space(error: OSError, where: Path) -> None:
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error):
        raise OSError(errno.ENOSPC, "No space left on device", str(where)) from None


def _changed(error: OSError) -> Conflict:
    where = f" ({error.filename})" if error.filename else ""
    return Conflict(
        f"Not deployed: {error.strerror or error}{where}: a folder of your data area changed "
        "while the model was copied in (moved, or replaced by a file or a link); try again"
    )


ROLLED_BACK = re.compile(r"^\.rolled-back-([0-9]{1,19})-")


def _next_version(existing: dict[int, Path], names: list[str]) -> int:
    """One more than the newest version, rolled-back ones counted (a number names one
    model only, in the traffic figures too)."""
    gone = [int(m[1]) for n in names if (m := ROLLED_BACK.match(n)) and int(m[1]) < 2**62]
    return max([*existing, *gone, 0]) + 1


def versions_of(files: OwnerFiles, relative: str | Path) -> dict[int, Path]:
    """find_versions() of the owner's models/<name>, looked at as the owner: version ->
    its folder (numeric names with a saved_model.pb); empty when there is none."""
    found = {}
    for name in files.listdir(relative):
        if name.isdigit():
            try:
                pb = files.lstat(Path(relative, name, "saved_model.pb"))
            except (UnsafeEntry, OSError):
                continue
            if pb and pb["kind"] == "file":
                found[int(name)] = files.area / relative / name
    return found


class EndpointBackend(ABC):
    """Runs endpoints for owners; records are JSON-able dicts with at least owner, name,
    versions, running, created, base_path and batching."""

    data_root: Path  # the shared data root (HUBFORGE_DATA): users/<owner>/models/<name>/

    def area(self, owner: str) -> Path:
        return self.data_root / "users" / owner

    def add_version(
        self,
        owner: str,
        name: str,
        model_dir: str,
        version: int | None,
        files: OwnerFiles | None = None,
    ) -> tuple[Path, int]:
        """Copy the SavedModel at ``model_dir`` (in the owner's area) in as a version of
        ``models/<name>/``; returns (base path, version). A server only ever sees complete
        versions (copied aside, then renamed). ``files``: the owner's area as the service
        reaches it (with per-user accounts: as the owner, reading and writing only what they
        may); None: this process copies (Kubernetes, where the service owns the data)."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise BadRequest(
                f"Endpoint name {name!r}: 1-40 lowercase letters, digits and '-' "
                "(starting and ending with a letter or digit)"
            )
        if version is not None and (
            not isinstance(version, int) or isinstance(version, bool) or version < 1
        ):
            raise BadRequest(f"version={version!r}: a positive integer")
        if files is not None:
            return self._add_version_as_owner(files, name, model_dir, version)
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
        base = area / "models" / name
        real = Path(os.path.realpath(base))
        if real != area / "models" / name and area not in real.parents:
            raise BadRequest(
                f"{area / 'models'} or {base} is a link out of your data area; endpoints "
                "keep their versions in your area: remove the link"
            )
        base.mkdir(parents=True, exist_ok=True)
        existing = find_versions(base) if base.is_dir() else {}
        version = version or _next_version(existing, os.listdir(base))
        if version in existing and existing[version].resolve() != path:
            raise BadRequest(
                f"Version {version} of {name} exists already; omit version= to add the next one"
            )
        if path != base / str(version):
            try:
                self._copy(path, base, version)
            except UnsafeEntry as e:
                raise BadRequest(f"Not deployed: {e}") from None
            except OSError as e:
                _no_space(e, base)
                raise
        return base, version

    def _add_version_as_owner(
        self, files: OwnerFiles, name: str, model_dir: str, version: int | None
    ) -> tuple[Path, int]:
        """add_version where every look and the copy are the owner's own (links followed
        only with their rights, never out of their area)."""
        area = files.area
        try:
            path = files.resolve(os.path.abspath(model_dir))
            real_area = files.resolve(area)  # the data folder may be reached through a link
        except (UnsafeEntry, OSError) as e:
            raise BadRequest(f"{model_dir}: {e}") from None
        if real_area not in path.parents:
            raise BadRequest(
                f"{model_dir} is outside your data area {area}: deploy what a job "
                "exported (its model folder) or copy the model there"
            )
        inside = path.relative_to(real_area)
        try:
            found = files.lstat(inside / "saved_model.pb")
        except (UnsafeEntry, OSError):
            found = None
        if not found or found["kind"] != "file":
            raise BadRequest(
                f"{model_dir} is not a SavedModel (no saved_model.pb): pass the "
                "folder model.save() wrote"
            )
        relative = Path("models", name)
        try:
            files.mkdirs(relative)
            existing = versions_of(files, relative)
        except UnsafeEntry:
            raise BadRequest(
                f"{area / 'models'} or {area / relative} is a link out of your data area; "
                "endpoints keep their versions in your area: remove the link"
            ) from None
        except OSError as e:
            _no_space(e, area / relative)
            raise _changed(e) from None
        version = version or _next_version(existing, files.listdir(relative))
        if version in existing and inside != relative / str(version):
            raise BadRequest(
                f"Version {version} of {name} exists already; omit version= to add the next one"
            )
        if inside != relative / str(version):
            try:
                files.copy(path, relative / str(version))
            except UnsafeEntry as e:
                raise BadRequest(f"Not deployed: {e}") from None
            except PermissionError as e:
                raise BadRequest(f"Not deployed: your account may not read it: {e}") from None
            except OSError as e:
                _no_space(e, area / relative)
                raise _changed(e) from None
        return area / relative, version

    @staticmethod
    def _copy(path: Path, base: Path, version: int) -> None:
        tmp = base / f".incoming-{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            copy_tree(path, tmp)  # never through a link out of the user's folder
        except BaseException:  # nothing half-copied stays behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tmp.rename(base / str(version))

    @classmethod
    @abstractmethod
    def from_workbench(cls, workbench: Any) -> EndpointBackend:
        """The backend the hubforge service runs, configured from the Workbench settings."""

    @abstractmethod
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
        """Add the SavedModel at ``model_dir`` as a version of endpoint ``name`` and serve it
        (with ``gpus`` GPUs per copy where the backend has them). ``replicas`` (see
        check_replicas; None: as the endpoint has them, 1 for a new one): how many copies
        serve it. The record says ``replicas`` (the settings) and ``ready`` (copies
        serving now)."""

    @abstractmethod
    def get(self, owner: str, name: str) -> dict[str, Any]:
        """The endpoint's record; NotFound for another owner's endpoint."""

    @abstractmethod
    def list(self, owner: str) -> list[dict[str, Any]]:
        """The owner's endpoints."""

    @abstractmethod
    def undeploy(self, owner: str, name: str) -> dict[str, Any]:
        """Stop serving; the model versions stay in the owner's data area."""

    @abstractmethod
    def target(self, owner: str, name: str) -> str:
        """Base URL the gateway forwards the endpoint's TF Serving requests to."""

    def route(self, owner: str, name: str) -> tuple[str, dict[str, str]]:
        """Where the gateway forwards and what it adds, read together (a deploy may swap the
        endpoint's process between two separate reads)."""
        return self.target(owner, name), self.gateway_headers(owner, name)

    def routes(self, owner: str, name: str) -> list[tuple[str, dict[str, str]]]:
        """Every copy the gateway may forward to, as route() gives one; on a connection
        that fails, it tries the next (every call it forwards changes nothing)."""
        return [self.route(owner, name)]

    def supervise(self, wanted: Any) -> list[str]:
        """Restart copies that died and scale (where the backend runs them itself; on
        Kubernetes the Deployment and its autoscaler do)."""
        return []

    def gateway_headers(self, owner: str, name: str) -> dict[str, str]:
        """Headers only the gateway sends (a per-endpoint key where the network alone does
        not keep other users away, as on one machine)."""
        return {}

    def keep_requests(self, owner: str, name: str, filename: str, data: bytes) -> None:
        """Write logged calls to ``models/<name>/requests/<filename>`` in the owner's area,
        readable by the owner only (serving.request_log). Here: this process writes (on
        Kubernetes the service owns the data), never through a link."""
        from ..owner_files import Local

        files = Local(self.area(owner))
        files.mkdirs(Path("models", name, "requests"), mode=0o700)
        files.write(Path("models", name, "requests", filename), data, mode=0o600)

    def begin_canary(self, owner: str, name: str) -> int:
        """Keep the version the endpoint serves now served beside the next one (a canary
        rollout, serving.rollout); returns that version."""
        raise BadRequest(
            "Canary rollouts need a backend that pins versions (serving.pinning): deploy "
            "without canary (the new version replaces the old one without failing requests)"
        )

    def end_canary(self, owner: str, name: str, canary: int, promoted: bool) -> None:
        """A rollout ended: the stable version is served no longer (promoted), or the
        canary's folder is kept aside and no longer served (rolled back)."""
        return None

    def wait_served(self, owner: str, name: str, version: int) -> None:
        """Until every copy of the endpoint serves ``version`` (a canary's traffic begins
        then)."""
        return None

    def restore(self) -> list[str]:
        """Bring endpoints back after a restart (nothing to do where a controller does it)."""
        return []
