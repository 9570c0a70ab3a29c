"""Reaching Label Studio: this user's credentials (asked of the hubforge service once), the
SDK clients, sharing projects with teammates, and the data area Label Studio serves from.

The caches (``_credentials``, ``_teammate_credentials``, ``_clients``) live here only: reset
them on this module (tests do), never on a copy imported elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ..client import ServiceClient, ServiceError
from .errors import LabelingError, LabelStudioDown

_credentials: dict[str, Any] | None = None
_teammate_credentials: dict[str, dict[str, Any]] = {}


def credentials(owner: str | None = None) -> dict[str, Any]:
    """This user's Label Studio URL and token (asked of the hubforge service once); with
    ``owner``, the ones for labeling a teammate's shared projects."""
    global _credentials
    if owner:
        if owner not in _teammate_credentials:
            _teammate_credentials[owner] = _service(
                "GET", "labeling/credentials?" + urlencode({"owner": owner})
            )
        return _teammate_credentials[owner]
    if _credentials is None:
        if os.environ.get("HUBFORGE_LABEL_STUDIO_TOKEN"):
            _credentials = {
                "api_url": os.environ["HUBFORGE_LABEL_STUDIO_URL"],
                "token": os.environ["HUBFORGE_LABEL_STUDIO_TOKEN"],
                "ui_url": os.environ.get("HUBFORGE_LABEL_STUDIO_UI", ""),
            }
        else:
            _credentials = _service("GET", "labeling/credentials")
    return _credentials


def _service(method: str, path: str, body: Any = None) -> Any:
    if not ServiceClient.available():
        raise LabelingError(
            "Labeling needs Label Studio: use it inside a Hubforge server, or set "
            "HUBFORGE_LABEL_STUDIO_URL and HUBFORGE_LABEL_STUDIO_TOKEN"
        )
    try:
        extra = {} if body is None else {"json": body}
        return _waiting_for_label_studio(lambda: ServiceClient().request(method, path, **extra))
    except ServiceError as e:
        raise LabelingError(f"Labeling: {e}") from None


STARTING_WAIT = 300  # seconds a call waits for a Label Studio that is starting


def _waiting_for_label_studio(call: Any) -> Any:
    """``call()``; while the service answers that Label Studio is finishing its start, say
    so once and try again (a first call right after the workbench starts then succeeds)."""
    from .server import STARTING

    deadline = time.monotonic() + STARTING_WAIT
    said = False
    while True:
        try:
            return call()
        except ServiceError as e:
            if e.status != 503 or STARTING not in str(e) or time.monotonic() > deadline:
                raise
        if not said:
            print("Label Studio is finishing its start…", file=sys.stderr, flush=True)
            said = True
        time.sleep(2)


_clients: dict[tuple[str, str], Any] = {}


def client(owner: str | None = None) -> Any:
    """The SDK client for this user, or for a teammate's shared projects (one per process:
    it keeps its connections open)."""
    from label_studio_sdk import LabelStudio

    creds = credentials(owner)
    key = (creds["api_url"], creds["token"])
    if key not in _clients:
        connection = httpx.Client(timeout=120, event_hooks={"response": [_unavailable]})
        _connections.append(connection)
        _clients[key] = LabelStudio(base_url=key[0], api_key=key[1], httpx_client=connection)
    return _clients[key]


_connections: list[httpx.Client] = []


def close_clients() -> None:
    """Close every SDK client's connections (a long-lived process switching users)."""
    _clients.clear()
    while _connections:
        _connections.pop().close()


def _unavailable(response: httpx.Response) -> None:
    """Label Studio answering that it is starting or cannot start (its database damaged):
    its own words, not the SDK's raw error with every header."""
    if response.status_code != 503:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        return
    if isinstance(body, dict) and body.get("status") in ("starting", "damaged"):
        raise LabelStudioDown(str(body.get("error") or "Label Studio is not available"))


def _account(ls: Any) -> str:
    """Which account a client acts as (a journal entry is replayed only through it)."""
    for (_, token), known in _clients.items():
        if known is ls:
            return hashlib.sha256(token.encode()).hexdigest()[:12]
    return ""


def share(member: str) -> list[str]:
    """Let hub user ``member`` label your projects (all of them: Label Studio's community
    edition has no per-project members). Returns everyone you share with. They open one with
    ``open_project(name, owner=<you>)``; Label Studio never hands two people the same item."""
    return _service("POST", "labeling/shares", {"member": member})["shared_with"]


def unshare(member: str) -> list[str]:
    """Stop sharing with ``member``: their token for your projects stops working at once."""
    return _service("DELETE", f"labeling/shares/{quote(member, safe='')}")["shared_with"]


def shares() -> dict[str, list[str]]:
    """{"shared_with": [teammates], "shared_with_me": [owners]}."""
    return _service("GET", "labeling/shares")


def data_root() -> Path:
    return Path(os.environ.get("HUBFORGE_DATA", "")).expanduser()
