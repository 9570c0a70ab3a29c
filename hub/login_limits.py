"""Limits on failed logins, per user name and per client address.

A guesser gets a few tries, then waits; others are not locked out. Past a name's limit every
try for that name is delayed (a doubling delay, one try at a time): guessing one password
slows to a crawl, yet the right password still signs its owner in, so nobody can lock a user
out by failing on purpose. An address's limit refuses one client guessing many names. Both
forget failures older than the window.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class TooManyFailures(Exception):
    """Refused before checking the password; ``wait`` seconds until the next try counts."""

    def __init__(self, what: str, wait: float):
        self.what, self.wait = what, wait
        minutes, seconds = divmod(max(1, round(wait)), 60)
        when = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
        super().__init__(f"Too many failed logins {what}: try again in {when}")


class FailedLogins:
    """Sliding-window counts of failures per key; thread-safe, in memory (a hub restart
    forgets them, which only shortens a wait)."""

    def __init__(self, per_name: int, per_address: int, window: float):
        self.per_name, self.per_address, self.window = per_name, per_address, window
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return deque()
        return times

    def check(self, name: str, address: str, now: float | None = None) -> None:
        """Raise TooManyFailures when either limit is reached."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for kind, key, limit, what in (
                ("address", address, self.per_address, "from your address"),
                ("name", name, self.per_name, f"for the user name {name!r}"),
            ):
                times = self._recent((kind, key), now)
                if limit and len(times) >= limit:
                    # the oldest failure that keeps the count at the limit must leave the window
                    raise TooManyFailures(what, times[len(times) - limit] + self.window - now)

    def check_address(self, address: str, now: float | None = None) -> None:
        """Raise TooManyFailures when the address has reached its limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(("address", address), now)
            if self.per_address and len(times) >= self.per_address:
                wait = times[len(times) - self.per_address] + self.window - now
                raise TooManyFailures("from your address", wait)

    def delay(
        self, name: str, now: float | None = None, base: float = 1.0, most: float = 16.0
    ) -> float:
        """Seconds a try for ``name`` waits before its password is checked: 0 below the
        name's limit, then ``base`` doubling with each further failure, at most ``most``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            over = len(self._recent(("name", name), now)) - self.per_name
        if not self.per_name or over < 0:
            return 0.0
        return min(most, base * 2 ** min(over, 30))

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) > 10_000:  # names sprayed once each: forget the old ones
                for key in list(self._failures):
                    self._recent(key, now)
            self._failures[("name", name)].append(now)
            self._failures[("address", address)].append(now)

    def succeeded(self, name: str) -> None:
        """The right password: the name's failures no longer count (its owner is back)."""
        with self._lock:
            self._failures.pop(("name", name), None)
