"""How many copies a local endpoint wants: its requests in flight, as the gateway sees them.

The gateway calls ``started``/``finished`` around every request it forwards; the service's
supervisor pass calls ``sample()`` once a second (the mean number in flight since the last
sample: time-weighted, so a burst between two samples counts) and then asks ``wanted`` per
endpoint. Copies are added as soon as the last ``up_window`` seconds ask for more, and taken
away only when the busiest sample of the last ``down_window`` seconds needs fewer (a short
lull does not stop a copy that is needed again a moment later), as Kubernetes' HPA does with
its scale-down stabilisation window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import DEFAULT_TARGET_CONCURRENCY


@dataclass
class _Load:
    in_flight: int = 0
    since: float = 0.0  # when in_flight last changed or was sampled
    area: float = 0.0  # requests x seconds since the last sample
    sampled: float = 0.0  # when it was last sampled
    means: deque = field(default_factory=deque)  # (time, mean in flight), oldest first


class Concurrency:
    def __init__(
        self,
        up_window: float = 10.0,
        down_window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.up_window, self.down_window, self.clock = up_window, down_window, clock
        self._lock = threading.Lock()
        self._loads: dict[tuple[str, str], _Load] = {}

    def _load(self, owner: str, name: str, now: float) -> _Load:
        load = self._loads.get((owner, name))
        if load is None:
            load = self._loads[(owner, name)] = _Load(since=now, sampled=now)
        return load

    def _change(self, owner: str, name: str, step: int) -> None:
        now = self.clock()
        with self._lock:
            load = self._load(owner, name, now)
            load.area += load.in_flight * (now - load.since)
            load.in_flight = max(0, load.in_flight + step)
            load.since = now

    def started(self, owner: str, name: str) -> None:
        self._change(owner, name, 1)

    def finished(self, owner: str, name: str) -> None:
        self._change(owner, name, -1)

    def in_flight(self, owner: str, name: str) -> int:
        with self._lock:
            load = self._loads.get((owner, name))
            return load.in_flight if load else 0

    def sample(self) -> None:
        """Close each endpoint's mean in flight since the last sample; forget endpoints
        idle for longer than the scale-down window."""
        now = self.clock()
        with self._lock:
            for key, load in list(self._loads.items()):
                load.area += load.in_flight * (now - load.since)
                elapsed = now - load.sampled
                if elapsed > 0:
                    load.means.append((now, load.area / elapsed))
                load.area, load.since, load.sampled = 0.0, now, now
                while load.means and load.means[0][0] < now - self.down_window:
                    load.means.popleft()
                if not load.in_flight and not any(m for _, m in load.means):
                    del self._loads[key]

    def wanted(self, owner: str, name: str, settings: dict[str, Any], current: int) -> int:
        """Copies wanted now (the caller keeps them within min and max)."""
        target = settings.get("target_concurrency") or DEFAULT_TARGET_CONCURRENCY
        now = self.clock()
        with self._lock:
            load = self._loads.get((owner, name))
            means = list(load.means) if load else []
        recent = [m for t, m in means if t >= now - self.up_window]
        up = _copies(sum(recent) / len(recent), target) if recent else 0
        if up > current:
            return up
        down = _copies(max((m for _, m in means), default=0.0), target)
        return min(current, max(down, 1))

    def status(self, owner: str, name: str) -> dict[str, float]:
        """What the scaling sees: requests in flight now and their mean over the last
        ``up_window`` seconds (for the endpoint's record)."""
        now = self.clock()
        with self._lock:
            load = self._loads.get((owner, name))
            if load is None:
                return {"in_flight": 0, "mean_in_flight": 0.0}
            recent = [m for t, m in load.means if t >= now - self.up_window]
            mean = sum(recent) / len(recent) if recent else 0.0
            return {"in_flight": load.in_flight, "mean_in_flight": round(mean, 2)}


def _copies(mean: float, target: float) -> int:
    """Copies for ``mean`` requests in flight at ``target`` each (within 10 %, as the HPA's
    tolerance: 8.5 in flight at a target of 8 stays one copy)."""
    return max(0, math.ceil(mean / target - 0.1))
