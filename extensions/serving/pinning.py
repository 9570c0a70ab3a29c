"""The version served before a canary rollout, pinned by a label (serving.rollout).

Both backends serve a model folder's newest version plus its labelled ones (labels.json,
TF Serving's version labels). A canary labels the version served now ``hubforge-stable``
before the new one is copied in, so both are served side by side by the same processes or
pods (no second reservation) and the gateway routes between them by number. Promoted: the
label goes. Rolled back: the new version's folder is kept aside (``.rolled-back-N-<hex>``,
no longer a version) and the label goes. A backend whose servers learn of labels late
(Kubernetes: a ConfigMap the pods reload) says so in ``labels_changed`` and
``wait_served``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from ..confined import UnsafeEntry
from ..owner_files import Local
from .errors import BadRequest, NotFound, ServingError
from .repository import LABELS_FILE
from .rollout import STABLE_LABEL


class StablePin:
    """Canary pinning over a backend's ``get`` and ``area`` (EndpointBackend)."""

    def owner_files(self, owner: str) -> Any:
        """The owner's area as the service may touch it (here: as this process)."""
        return Local(self.area(owner))  # type: ignore[attr-defined]

    def read_labels(self, owner: str, name: str) -> dict[str, int]:
        files = self.owner_files(owner)
        try:
            fd = files.open(Path("models", name, LABELS_FILE))
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

    def write_labels(self, owner: str, name: str, labels: dict[str, int]) -> None:
        data = json.dumps(labels, indent=2).encode()
        self.owner_files(owner).write(Path("models", name, LABELS_FILE), data, mode=0o644)

    def begin_canary(self, owner: str, name: str) -> int:
        """Pin the version served now; returns it."""
        try:
            record = self.get(owner, name)  # type: ignore[attr-defined]
        except NotFound:
            record = {"running": False, "versions": []}
        if not record["running"] or not record["versions"]:
            raise BadRequest(
                f"{name} serves no version now: a canary is compared with the version it "
                "serves; deploy without canary first"
            )
        stable = max(record["versions"])
        self.write_labels(owner, name, {**self.read_labels(owner, name), STABLE_LABEL: stable})
        try:
            self.labels_changed(owner, name, stable)
        except ServingError:  # its servers never learnt of the pin: no canary
            self._unpin(owner, name)
            raise
        return stable

    def end_canary(self, owner: str, name: str, canary: int, promoted: bool) -> None:
        """Promoted: the pin goes. Rolled back: the canary's folder is kept aside, then the
        pin goes (ServingError when the folder cannot be moved: the pin stays, so the
        stable version keeps serving every call that names no version)."""
        files = self.owner_files(owner)
        folder = Path("models", name, str(canary))
        # done already when the folder is gone (a service that died after moving it)
        if not promoted and files.exists(folder):
            aside = Path("models", name, f".rolled-back-{canary}-{secrets.token_hex(4)}")
            try:
                files.copy(files.area / folder, aside)
                files.remove(folder)
            except (OSError, UnsafeEntry) as e:
                with contextlib.suppress(OSError, UnsafeEntry):
                    files.remove(aside)
                raise ServingError(f"version {canary} not put aside: {e}") from None
        self._unpin(owner, name)

    def _unpin(self, owner: str, name: str) -> None:
        labels = self.read_labels(owner, name)
        labels.pop(STABLE_LABEL, None)
        self.write_labels(owner, name, labels)
        self.labels_changed(owner, name, None)

    def labels_changed(self, owner: str, name: str, pinned: int | None) -> None:
        """After labels.json changed: until the endpoint's servers serve ``pinned`` under
        the stable label (None: the pin went). Local processes read the folder each second:
        nothing to wait for."""

    def wait_served(self, owner: str, name: str, version: int) -> None:
        """Until every copy of the endpoint serves ``version`` (a canary's traffic begins
        then); ServingError when they do not in time."""
