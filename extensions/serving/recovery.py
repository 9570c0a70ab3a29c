"""Rebuild the records of local endpoints from what runs: the endpoint processes (their
arguments and environment say which model folder they serve, on which port, with which key)
and the model folders in the owners' areas. Used when ``endpoints.json`` is damaged or lost,
so no endpoint is dropped and no endpoint process is left running unrecorded."""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from ..processes import MARKER
from .base import NAME, check_batching
from .errors import ServingError
from .server import KEY_ENV, parser

log = logging.getLogger(__name__)

MODULE = "hubforge.serving.server"
# a record's key in endpoints.json, '"<owner>/<name>": {', readable in a truncated file too
MENTION = re.compile(rb'"([^"/\\]+)/([a-z0-9][a-z0-9-]{0,38})"\s*:\s*\{')


def keep_aside(path: Path) -> Path:
    """Copy a damaged state file to ``<name>.damaged-<unix time>`` (never over another
    kept copy) for a person to look at; the original is then replaced atomically."""
    stamp = int(time.time())
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while True:
        try:
            fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            kept = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
            n += 1
    with os.fdopen(fd, "wb") as out:
        out.write(path.read_bytes())
    return kept


def _flags(cmdline: list[str]) -> Any:
    """The server's parsed flags when ``cmdline`` runs ``python -m hubforge.serving.server``."""
    for i in range(len(cmdline) - 1):
        if cmdline[i] == "-m" and cmdline[i + 1] == MODULE:
            try:
                args, _ = parser().parse_known_args(cmdline[i + 2 :])
            except SystemExit:  # not arguments the service ever gives
                return None
            return args
    return None


def _endpoint_of(base: str | None, name: str, data_root: Path) -> tuple[str, str] | None:
    """(owner, name) when ``base`` is ``<data_root>/users/<owner>/models/<name>``, a folder."""
    if not base:
        return None
    try:
        parts = Path(base).relative_to(data_root / "users").parts
    except ValueError:
        return None
    if len(parts) != 3 or parts[1] != "models" or parts[2] != name or not NAME.fullmatch(name):
        return None
    try:  # another account's area may not be looked into: the process's uid then decides
        if not stat.S_ISDIR(os.stat(base).st_mode):
            return None
    except PermissionError:
        pass
    except OSError:
        return None
    return parts[0], name


def record_of(
    proc: psutil.Process,
    data_root: Path,
    uid_of: Callable[[str], int | None] | None = None,
    key_of: Callable[[str, str, int], str] | None = None,
) -> dict[str, Any] | None:
    """The record the service wrote when it started ``proc``, rebuilt from the process; None
    when ``proc`` is not an endpoint the service started for this data root. ``uid_of``:
    owner -> the uid their endpoints run as (with per-user accounts); ``key_of``: the
    gateway's key of (base path, name, port), else the one in the process's environment."""
    try:
        args = _flags(proc.cmdline())
        if args is None or args.model_config_file:
            return None
        endpoint = _endpoint_of(args.model_base_path, args.model_name, data_root)
        if endpoint is None:
            return None
        if uid_of is not None and proc.uids().real != uid_of(endpoint[0]):
            return None  # not running as the owner of that model folder
        try:
            env = proc.environ()
        except psutil.AccessDenied:  # another account's: its arguments and uid must do
            env = None
        marker = os.environ.get(MARKER)
        if env is not None and (not env.get(KEY_ENV) or (marker and env.get(MARKER) != marker)):
            return None  # started by hand or by another workbench
        key = (env or {}).get(KEY_ENV) or ""
        if key_of is not None:
            key = key_of(args.model_base_path, args.model_name, args.rest_api_port)
        if not key:
            return None
        created = proc.create_time()
        batching = check_batching(
            {"max_batch_size": args.max_batch_size, "batch_timeout_ms": args.batch_timeout_ms}
        )
    except (psutil.Error, OSError, ServingError, KeyError, RuntimeError):
        return None
    return {
        "owner": endpoint[0],
        "name": endpoint[1],
        "base_path": args.model_base_path,
        "port": args.rest_api_port,
        "key": key,
        "batching": batching,
        "pid": proc.pid,
        "create_time": created,
        "created": created,
    }


def running_endpoints(
    data_root: Path,
    uid_of: Callable[[str], int | None] | None = None,
    key_of: Callable[[str, str, int], str] | None = None,
) -> list[dict[str, Any]]:
    """A record for each endpoint process of this data root that runs now, oldest first."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        record = record_of(proc, data_root, uid_of, key_of)
        if record is not None:
            found.append(record)
    return sorted(found, key=lambda r: r["create_time"])


def newest_by_endpoint(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``owner/name`` -> the newest process's record (the one a finished deploy handed to)."""
    records: dict[str, dict[str, Any]] = {}
    for record in sorted(found, key=lambda r: r["create_time"]):
        records[f"{record['owner']}/{record['name']}"] = record
    return records


def mentioned(damaged: bytes) -> list[tuple[str, str]]:
    """(owner, name) of every record a damaged ``endpoints.json`` still names."""
    found = []
    for match in MENTION.finditer(damaged):
        try:
            owner, name = match[1].decode(), match[2].decode()
        except UnicodeDecodeError:
            continue
        if owner not in (".", "..") and NAME.fullmatch(name) and (owner, name) not in found:
            found.append((owner, name))
    return found
