"""Opt-in request logging and a drift alert per endpoint (#36).

An owner turns logging on with a sampling ``rate`` and a size cap: the gateway then keeps that
share of the calls it forwarded and were answered 200 (request and answer bodies up to
``max_body_bytes`` each), and the service writes them every 10 s, as the owner, to
``models/<name>/requests/<time>-<id>.jsonl`` in the owner's area (mode 0600: nobody else reads
them). With a baseline (rows of the training data, serving.drift), the service compares the
last sampled rows with it every minute and raises the endpoint's drift alert, telling the
owner once, when the largest feature PSI passes the threshold.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..atomic import DamagedStateFile, read_json, write_json
from . import drift
from .base import NAME
from .errors import BadRequest

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # the largest size cap an owner may set per body
BUFFERED = 2000  # entries waiting for the next write, per endpoint (more are dropped)
RECENT = 2000  # sampled rows kept for the drift check, per endpoint
MIN_ROWS = 100  # rows before a drift check says anything
MAX_FEATURES = 100  # drift is for tabular inputs
BASELINE_ROWS = 2000


def check_settings(body: Any) -> dict[str, Any]:
    """{"rate": 0..1, "max_body_bytes": 1..1 MiB}; rate 0 turns logging off."""
    if not isinstance(body, dict) or set(body) - {"rate", "max_body_bytes"}:
        raise BadRequest('Send {"rate": 0.1, "max_body_bytes": 65536} (rate 0: off)')
    rate, cap = body.get("rate", 0.1), body.get("max_body_bytes", 65536)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise BadRequest(f"rate={rate!r:.30}: the share of calls kept, from 0 (off) to 1")
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_BODY:
        raise BadRequest(f"max_body_bytes={cap!r:.30}: from 1 to {MAX_BODY} bytes")
    return {"rate": float(rate), "max_body_bytes": cap}


class RequestLog:
    """Settings and baselines are files of the service (``<root>/<owner>/<name>.json``);
    the samples go to the owner's area through ``write(owner, name, filename, data)``."""

    def __init__(
        self,
        root: Path | None,
        write: Callable[[str, str, str, bytes], None],
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ):
        self.root, self.write, self.rng, self.clock = root, write, rng, clock
        self._lock = threading.Lock()
        self._settings: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._waiting: dict[tuple[str, str], list[bytes]] = {}
        self._recent: dict[tuple[str, str], collections.deque] = {}

    def _file(self, key: tuple[str, str]) -> Path | None:
        if self.root is None or not NAME.fullmatch(key[1]):
            return None
        return self.root / quote(key[0], safe="") / f"{key[1]}.json"

    def get(self, owner: str, name: str) -> dict[str, Any] | None:
        key = (owner, name)
        with self._lock:  # only settings that exist are kept in memory
            if key in self._settings:
                return self._settings[key]
            path, kept = self._file(key), None
            if path is None or not path.exists():
                return None
            try:
                kept = read_json(path, None)
            except DamagedStateFile as e:
                log.error("%s; request logging of that endpoint is off", e)
            if isinstance(kept, dict):
                self._settings[key] = kept
                return kept
            return None

    def _save(self, owner: str, name: str, settings: dict[str, Any] | None) -> None:
        key = (owner, name)
        with self._lock:
            if settings is None:
                self._settings.pop(key, None)
            else:
                self._settings[key] = settings
        path = self._file(key)
        if path is None:
            return
        if settings is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(path, settings, mode=0o600)

    def configure(self, owner: str, name: str, body: Any) -> dict[str, Any]:
        settings = {**(self.get(owner, name) or {}), **check_settings(body)}
        self._save(owner, name, settings)
        return self.public(owner, name)

    def set_baseline(self, owner: str, name: str, rows: Any) -> dict[str, Any]:
        """Rows of the training data (at most BASELINE_ROWS, MAX_FEATURES features)."""
        if isinstance(rows, list) and len(rows) > BASELINE_ROWS:
            raise BadRequest(f"baseline: at most {BASELINE_ROWS} rows (send a random sample)")
        base = drift.baseline(rows)
        if base["features"] > MAX_FEATURES:
            raise BadRequest(f"baseline: drift is checked for at most {MAX_FEATURES} features")
        settings = {**(self.get(owner, name) or check_settings({})), "baseline": base}
        settings["drift"] = None
        self._save(owner, name, settings)
        with self._lock:
            self._recent.pop((owner, name), None)  # compared from now on
        return self.public(owner, name)

    def notify(self, owner: str, name: str, settings: dict[str, Any] | None) -> dict[str, Any]:
        """Who is told when the drift alert goes on (Notifications.check'ed settings)."""
        kept = self.get(owner, name) or check_settings({})
        self._save(owner, name, {**kept, "notify": settings})
        return self.public(owner, name) or {}

    def forget(self, owner: str, name: str) -> None:
        """An undeploy: logging and its baseline go (the files written stay the owner's)."""
        self._save(owner, name, None)
        with self._lock:
            self._waiting.pop((owner, name), None)
            self._recent.pop((owner, name), None)

    def public(self, owner: str, name: str) -> dict[str, Any] | None:
        settings = self.get(owner, name)
        if not settings:
            return None
        return {
            "rate": settings.get("rate", 0.0),
            "max_body_bytes": settings.get("max_body_bytes"),
            "baseline_features": (settings.get("baseline") or {}).get("features"),
            "drift": settings.get("drift"),
        }

    def offer(
        self, owner: str, name: str, version: str, status: int, request: bytes, answer: bytes
    ) -> None:
        """A call the gateway forwarded: kept at the endpoint's rate (200s, within the cap)."""
        settings = self.get(owner, name)
        if not settings or status != 200 or not settings.get("rate"):
            return
        cap = settings["max_body_bytes"]
        if len(request) > cap or len(answer) > cap or self.rng() >= settings["rate"]:
            return
        try:
            body = json.loads(request)
            entry = {
                "time": self.clock(),
                "version": version,
                "request": body,
                "response": json.loads(answer),
            }
        except ValueError:
            return
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        rows = drift.rows_of(body) if settings.get("baseline") else None
        with self._lock:
            waiting = self._waiting.setdefault((owner, name), [])
            if len(waiting) < BUFFERED:
                waiting.append(line)
            if rows:
                self._recent.setdefault((owner, name), collections.deque(maxlen=RECENT)).extend(
                    rows
                )

    def flush(self) -> None:
        """Write what waits, one new file per endpoint and flush, as its owner."""
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        for (owner, name), lines in waiting.items():
            filename = f"{stamp}-{secrets.token_hex(3)}.jsonl"
            try:
                self.write(owner, name, filename, b"".join(lines))
            except Exception as e:  # e.g. the owner's folder is a link now: those are lost
                log.error("Requests of %s/%s not written: %s", owner, name, e)

    def check_drift(self, alerted: Callable[[str, str, dict[str, Any]], None]) -> None:
        """Compare each endpoint's recent rows with its baseline; ``alerted`` when an
        endpoint's drift alert goes on (once, until it goes off again)."""
        with self._lock:
            recent = {k: list(v) for k, v in self._recent.items() if len(v) >= MIN_ROWS}
        for (owner, name), rows in recent.items():
            settings = self.get(owner, name)
            if not settings or not settings.get("baseline"):
                continue
            try:
                found = drift.compare(rows, settings["baseline"])
            except BadRequest as e:  # rows of another shape than the baseline's
                found = {"error": str(e), "drifted": False}
            was = (settings.get("drift") or {}).get("drifted", False)
            found.pop("features", None)
            state = {**found, "checked": self.clock()}
            self._save(owner, name, {**settings, "drift": state})
            if state["drifted"] and not was:
                alerted(owner, name, state)
