"""Exclusive GPU allocation for local mode, persisted so a restart forgets nothing."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .atomic import DamagedStateFile, read_json, write_json

log = logging.getLogger(__name__)


class NotEnoughGpus(RuntimeError):
    """Raised when a request asks for more GPUs than are free."""

    def __init__(self, requested: int, free: int, total: int):
        self.requested, self.free, self.total = requested, free, total
        super().__init__(
            f"{requested} GPU(s) requested but only {free} of {total} are free. "
            "Pick a profile with fewer GPUs or wait until another server or job stops."
        )


def holder_user(owner: str) -> str:
    """The user an allocation belongs to: "<user>/<server>" or "job/<user>/<job id>"."""
    parts = owner.split("/")
    return parts[1] if parts[0] == "job" and len(parts) > 2 else parts[0]


class GpuAllocator:
    """Hands out devices of an inventory to owners ("user/server" or a job id)."""

    def __init__(self, inventory: list[str], state_file: str | Path):
        self.inventory = list(inventory)
        self.state_file = Path(state_file)
        self._lock = threading.RLock()  # the loop (servers) and the queue's threads (jobs)
        try:
            saved = read_json(self.state_file, {}) or {}
        except DamagedStateFile as e:
            # Allocations are rebuilt as servers and jobs ask again; the damaged file is kept
            # beside it for a person to look at, never overwritten.
            kept = self.state_file.with_name(f"{self.state_file.name}.damaged-{int(time.time())}")
            self.state_file.rename(kept)
            log.error("%s It was moved to %s; GPU allocations start empty.", e, kept)
            saved = {}
        # Drop devices that left the inventory since the last run.
        self._owners: dict[str, list[str]] = {
            owner: [d for d in devices if d in self.inventory] for owner, devices in saved.items()
        }

    def allocations(self, user: str | None = None) -> dict[str, list[str]]:
        """Owner -> devices; only ``user``'s servers and jobs when given."""
        with self._lock:
            return {
                o: list(d)
                for o, d in self._owners.items()
                if d and (user is None or holder_user(o) == user)
            }

    def free(self) -> list[str]:
        with self._lock:
            used = {d for devices in self._owners.values() for d in devices}
            return [d for d in self.inventory if d not in used]

    def allocate(self, owner: str, count: int) -> list[str]:
        """Give ``owner`` ``count`` devices, replacing what it held before."""
        if count < 0:
            raise ValueError(f"GPU count must be >= 0, got {count}")
        with self._lock:
            previous = self._owners.pop(owner, [])
            free = self.free()
            if count > len(free):
                self._owners[owner] = previous
                raise NotEnoughGpus(count, len(free), len(self.inventory))
            self._owners[owner] = free[:count]
            self._save()
            return list(self._owners[owner])

    def release(self, owner: str) -> list[str]:
        with self._lock:
            devices = self._owners.pop(owner, [])
            self._save()
            return devices

    def _save(self) -> None:
        write_json(self.state_file, self.allocations())

    def summary(self) -> dict:
        return {
            "total": len(self.inventory),
            "free": len(self.free()),
            "inventory": list(self.inventory),
            "allocations": self.allocations(),
        }
