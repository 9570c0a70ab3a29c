"""What each endpoint was asked and how it answered, as the gateway saw it (#36).

Every request the gateway forwards is counted in its endpoint's 10-second bin: the answer's
status, the time to the answer (a fixed latency histogram) and the version asked for. Bins
are kept for a day in the service's own folder (``<service>/endpoint-traffic/<owner>/<name>.json``,
written atomically), so a restart of the service loses at most the bins of its last
seconds. The service also reads the model calls' batch sizes from local endpoint processes
(:meth:`Traffic.batches`, every 10 s: see serving.batch_sizes) into the same bins.
:meth:`Traffic.summary` turns the bins of a window into what the monitoring views
show: requests per second, p50/p90/p99 latency and errors over time, and the window's totals.
The same figures on one machine and on Kubernetes: the gateway is the service on both.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..atomic import DamagedStateFile, read_json, write_text
from .errors import BadRequest

log = logging.getLogger(__name__)

BIN = 10  # seconds per bin
KEEP = 86400  # seconds of bins kept per endpoint
# upper bounds (ms) of the latency buckets; a last bucket holds what is slower
BOUNDS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
MAX_VERSIONS = 16  # versions or labels counted apart in one bin; the rest as "other"
WINDOW = re.compile(r"^([0-9]{1,6})([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: Any) -> int:
    """'90s', '15m', '1h', '1d' or seconds -> seconds (10 s to a day); BadRequest else."""
    match = WINDOW.fullmatch(str(text).strip()) if isinstance(text, str | int) else None
    seconds = int(match[1]) * UNITS[match[2]] if match else 0
    if not BIN <= seconds <= KEEP:
        raise BadRequest(
            f"window={text!r:.40}: a time from 10s to 1d, like 15m, 1h or 1d (seconds without "
            "a unit)"
        )
    return seconds


def quantile(q: float, counts: list[int]) -> float | None:
    """The ``q`` quantile (ms) of a latency histogram (counts per bucket of BOUNDS_MS and one
    above), interpolated within its bucket as Prometheus' histogram_quantile does; None for
    no requests. A quantile in the last bucket is its lower bound (it has no upper one)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            lower = BOUNDS_MS[i - 1] if i else 0.0
            if i >= len(BOUNDS_MS):
                return float(lower)
            return lower + (BOUNDS_MS[i] - lower) * (rank - seen) / n
        seen += n
    return float(BOUNDS_MS[-1])


def _bucket(ms: float) -> int:
    for i, bound in enumerate(BOUNDS_MS):
        if ms <= bound:
            return i
    return len(BOUNDS_MS)


def _counts(start: int) -> dict[str, Any]:
    return {"t": start, "status": {}, "latency": [0] * (len(BOUNDS_MS) + 1)}


def _empty(start: int) -> dict[str, Any]:
    """A bin: statuses and latencies of all its requests, and of each version's
    (``versions``: version -> the same counts)."""
    return {**_counts(start), "versions": {}}


def _sound_counts(counts: Any) -> bool:
    return (
        isinstance(counts, dict)
        and isinstance(counts.get("status"), dict)
        and all(isinstance(n, int) for n in counts["status"].values())
        and isinstance(counts.get("latency"), list)
        and len(counts["latency"]) == len(BOUNDS_MS) + 1
        and all(isinstance(n, int) for n in counts["latency"])
    )


def _sound(bin_: Any) -> bool:
    """A bin as this version writes them (a file edited by hand or from an older version
    loses only the bins that are not)."""
    batch = bin_.get("batch", [0, 0]) if isinstance(bin_, dict) else None
    return (
        _sound_counts(bin_)
        and isinstance(batch, list)
        and len(batch) == 2
        and all(isinstance(n, int) and n >= 0 for n in batch)
        and isinstance(bin_.get("t"), int)
        and isinstance(bin_.get("versions"), dict)
        and all(_sound_counts(c) for c in bin_["versions"].values())
    )


def _add_counts(into: dict[str, Any], counts: dict[str, Any]) -> None:
    for code, n in counts["status"].items():
        into["status"][code] = into["status"].get(code, 0) + n
    into["latency"] = [a + b for a, b in zip(into["latency"], counts["latency"], strict=True)]


def _add(into: dict[str, Any], bin_: dict[str, Any]) -> None:
    _add_counts(into, bin_)
    if "batch" in bin_:  # model calls and the rows they took
        calls, rows = into.get("batch", [0, 0])
        into["batch"] = [calls + bin_["batch"][0], rows + bin_["batch"][1]]
    for version, counts in bin_["versions"].items():
        _add_counts(into["versions"].setdefault(version, _counts(0)), counts)


def _figures(bin_: dict[str, Any], seconds: float) -> dict[str, Any]:
    requests = sum(bin_["status"].values())
    errors = sum(n for s, n in bin_["status"].items() if s >= "500")
    calls, rows = bin_.get("batch", [0, 0])
    return {
        "requests": requests,
        "rps": round(requests / seconds, 3),
        "model_calls": calls,
        "batch_size": round(rows / calls, 2) if calls else None,  # mean rows per model call
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        **{f"p{int(q * 100)}_ms": _round(quantile(q, bin_["latency"])) for q in (0.5, 0.9, 0.99)},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Traffic:
    """Per-endpoint bins of what the gateway forwarded. Thread-safe: the gateway counts on
    the service's loop, the periodic pass saves from a thread."""

    def __init__(self, root: Path | None, clock: Callable[[], float] = time.time):
        self.root = root  # None: kept in memory only
        self.clock = clock
        self._lock = threading.Lock()
        self._bins: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._dirty: set[tuple[str, str]] = set()

    def _file(self, key: tuple[str, str]) -> Path | None:
        if self.root is None or not re.fullmatch(r"[a-z0-9-]{1,40}", key[1]):
            return None  # (endpoint names only: never a path out of the folder)
        return self.root / quote(key[0], safe="") / f"{key[1]}.json"

    def _load(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        if key not in self._bins:
            path, bins = self._file(key), []
            if path is not None:
                try:
                    bins = read_json(path, []) or []
                except DamagedStateFile as e:  # the next save writes it afresh
                    log.error("%s; its endpoint's traffic starts again from now", e)
                if not isinstance(bins, list):
                    bins = []
            self._bins[key] = [b for b in bins if _sound(b)]
        return self._bins[key]

    def observe(self, owner: str, name: str, status: int, seconds: float, version: str) -> None:
        """One request the gateway forwarded (or answered for the endpoint: 502, 503)."""
        now = self.clock()
        start = int(now // BIN * BIN)
        with self._lock:
            bins = self._load((owner, name))
            if not bins or bins[-1]["t"] != start:
                bins.append(_empty(start))
                while bins and bins[0]["t"] < now - KEEP:
                    bins.pop(0)
            last, code, bucket = bins[-1], str(status), _bucket(seconds * 1000)
            if version not in last["versions"] and len(last["versions"]) >= MAX_VERSIONS:
                version = "other"  # (callers naming ever new labels: bounded)
            for counts in (last, last["versions"].setdefault(version, _counts(start))):
                counts["status"][code] = counts["status"].get(code, 0) + 1
                counts["latency"][bucket] += 1
            self._dirty.add((owner, name))

    def batches(self, owner: str, name: str, calls: int, rows: int) -> None:
        """Model calls an endpoint's processes made since the last look, and the rows they
        took (batching merges concurrent requests: more rows per call)."""
        if calls <= 0 or rows < 0:
            return
        now = self.clock()
        start = int(now // BIN * BIN)
        with self._lock:
            bins = self._load((owner, name))
            if not bins or bins[-1]["t"] != start:
                bins.append(_empty(start))
            done, taken = bins[-1].get("batch", [0, 0])
            bins[-1]["batch"] = [done + calls, taken + rows]
            self._dirty.add((owner, name))

    def summary(self, owner: str, name: str, window: int, points: int = 60) -> dict[str, Any]:
        """The window's totals and ``points`` steps of it (each step's requests, rps,
        errors, error rate and p50/p90/p99 ms; None where a step had no request)."""
        if not isinstance(points, int) or not 1 <= points <= 500:
            raise BadRequest(f"points={points!r:.20}: a number of steps from 1 to 500")
        now = self.clock()
        step = max(BIN, math.ceil(window / points / BIN) * BIN)
        end = int(now // BIN * BIN) + BIN  # the end of the bin now filling
        first = end - step * math.ceil(window / step)
        with self._lock:
            bins = [b for b in self._load((owner, name)) if b["t"] >= first]
        steps = [_empty(t) for t in range(first, end, step)]
        total = _empty(first)
        for b in bins:
            _add(steps[(b["t"] - first) // step], b)
            _add(total, b)
        elapsed = max(1.0, min(window, now - first))
        series = [{"t": s["t"], **_figures(s, step)} for s in steps]
        return {
            "owner": owner,
            "name": name,
            "window_s": window,
            "step_s": step,
            "now": now,
            "totals": {
                **_figures(total, elapsed),
                "by_status": dict(sorted(total["status"].items())),
                "by_version": {
                    v: sum(c["status"].values()) for v, c in sorted(total["versions"].items())
                },
            },
            "series": series,
        }

    def version_stats(self, owner: str, name: str, since: float) -> dict[str, dict[str, Any]]:
        """Per version asked for (or routed to): requests, errors, error rate and p50/p90/p99
        ms of the bins that end after ``since`` (what a canary rollout compares)."""
        with self._lock:
            bins = [b for b in self._load((owner, name)) if b["t"] + BIN > since]
        total = _empty(0)
        for b in bins:
            _add(total, b)
        seconds = max(1.0, self.clock() - since)
        return {v: _figures(c, seconds) for v, c in total["versions"].items()}

    def save(self) -> None:
        """Write the endpoints counted in since the last save (atomically, 0600)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            copies = {key: [dict(b) for b in self._bins.get(key, [])] for key in dirty}
        for key, bins in copies.items():
            path = self._file(key)
            if path is None:
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_text(path, json.dumps(bins, separators=(",", ":")), mode=0o600)
            except OSError as e:  # a full disk: kept in memory, written at the next save
                log.error("Traffic of %s/%s not saved: %s", *key, e)
                with self._lock:
                    self._dirty.add(key)
