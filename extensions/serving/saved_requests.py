"""Requests a user keeps for an endpoint, to send again from the sidebar's "Try it".

Kept per user in ``~/.hubforge/saved-requests/<endpoint>.json`` (0600, replaced atomically),
so they survive kernels, servers and redeploys; undeploying keeps them too (a redeploy under
the same name finds them again).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile, read_json, write_json
from .errors import BadRequest

ENDPOINT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_SAVED = 50
MAX_BYTES = 1024 * 1024


def folder() -> Path:
    return Path.home() / ".hubforge" / "saved-requests"


def _path(endpoint: str) -> Path:
    if not isinstance(endpoint, str) or not ENDPOINT_NAME.fullmatch(endpoint):
        raise BadRequest(f"{endpoint!r} is not an endpoint name (lower-case letters, digits, -)")
    return folder() / f"{endpoint}.json"


def list_saved(endpoint: str) -> list[dict[str, Any]]:
    """The saved requests of ``endpoint``, newest first."""
    path = _path(endpoint)
    try:
        saved = read_json(path, {"requests": []}) or {"requests": []}
    except DamagedStateFile as e:
        raise BadRequest(f"{e}; delete {path} to start again") from None
    return sorted(saved.get("requests", []), key=lambda r: r.get("saved", 0), reverse=True)


def save(endpoint: str, name: Any, request: Any) -> list[dict[str, Any]]:
    """Keep ``request`` (a predict body) as ``name``; the same name replaces it."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 60 or not name.isprintable():
        raise BadRequest('"name": 1 to 60 printable characters, e.g. "two cats"')
    if not isinstance(request, dict) or not isinstance(request.get("instances"), list):
        raise BadRequest('"request": a predict body such as {"instances": [[1.0, 2.0]]}')
    if len(json.dumps(request)) > MAX_BYTES:
        raise BadRequest("A saved request may be 1 MB at most; keep a smaller example")
    kept = [r for r in list_saved(endpoint) if r["name"] != name.strip()]
    if len(kept) >= MAX_SAVED:
        raise BadRequest(f"{endpoint} has {MAX_SAVED} saved requests: delete one first")
    kept.insert(0, {"name": name.strip(), "request": request, "saved": time.time()})
    path = _path(endpoint)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_json(path, {"requests": kept}, mode=0o600)
    return kept


def delete(endpoint: str, name: str) -> list[dict[str, Any]]:
    """Forget the saved request ``name``; KeyError when there is none."""
    saved = list_saved(endpoint)
    kept = [r for r in saved if r["name"] != name]
    if len(kept) == len(saved):
        raise KeyError(name)
    write_json(_path(endpoint), {"requests": kept}, mode=0o600)
    return kept
