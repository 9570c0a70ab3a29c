"""The user's TensorBoard instances, recorded in one JSON file shared by kernels and the
server extension (a lock serialises writers; writes are atomic)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import read_json, write_json
from .errors import writing


def default_state_file() -> Path:
    return Path(os.environ.get("HOME") or Path.home()) / ".hubforge" / "tensorboards.json"


class InstanceStore:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_state_file()

    def read(self) -> dict[str, dict[str, Any]]:
        return (read_json(self.path, {}) or {}).get("instances", {})

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Read-modify-write under an exclusive lock; StateNotWritable when the folder or
        the file cannot be written (an unwritable home, a full disk)."""
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 (closed below)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            instances = self.read()
            yield instances
            with writing(self.path):
                write_json(self.path, {"instances": instances}, mode=0o600)
