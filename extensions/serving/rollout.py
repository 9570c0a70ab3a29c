"""Canary rollouts of an endpoint's new version (#36).

``deploy(..., canary=10)`` keeps the version served until now (the *stable* one, pinned by
the label ``hubforge-stable`` so the endpoint keeps serving it beside the new one: one
process, no second reservation) and lets the gateway send the new version 10 % of the
requests that name no version, by request or, with ``sticky_header``, by a hash of that
header. The service's pass compares the two versions' answers since the step began (what
the gateway counted, serving.traffic): a canary whose error rate (5xx) or p99 latency is
out of bounds against the stable version's is rolled back at once (its folder kept aside,
the reason in the rollout's history, its owner told); one that holds steps up every
``interval`` (10 → 50 → 100 %) and is promoted at 100 %. Records are files of the service
(``<service>/rollouts/<owner>/<name>.json``, written atomically), so a restart of the
service resumes a rollout where it was.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..atomic import DamagedStateFile, read_json, write_json
from .base import NAME
from .errors import BadRequest
from .traffic import parse_window

log = logging.getLogger(__name__)

STABLE_LABEL = "hubforge-stable"
DEFAULTS: dict[str, Any] = {
    "steps": [10, 50, 100],
    "interval_s": 300,
    "sticky_header": None,
    "max_error_rate_increase": 0.02,  # the canary's 5xx share may exceed the stable's by this
    "max_latency_ratio": 2.0,  # and its p99 the stable's p99 times this...
    "latency_slack_ms": 20.0,  # ...and by more than this many ms, before it is rolled back
    "min_requests": 20,  # answers of the canary in a step before it is judged
    "notify": None,  # {"on": "failure", "email": true, "webhook": url}: told when it ends
}
HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
RUNNING, PROMOTED, ROLLED_BACK = "running", "promoted", "rolled_back"


def _number(settings: dict, key: str, low: float, high: float, kind: type = float) -> Any:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"canary.{key}={value!r:.40}: a number from {low} to {high}")
    return kind(value)


def check_canary(value: Any) -> dict[str, Any] | None:
    """``canary=10`` (the first step's percent) or ``{"steps": [10, 50, 100], "interval":
    "5m", "sticky_header": "X-User", "max_error_rate_increase": 0.02, "max_latency_ratio":
    2, "latency_slack_ms": 20, "min_requests": 20}`` as kept; None: no canary."""
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"steps": [value, *(s for s in (50, 100) if s > value)]}
    if not isinstance(value, dict):
        raise BadRequest('canary: a percent (1-99) or an object like {"steps": [10, 50, 100]}')
    allowed = (set(DEFAULTS) - {"interval_s"}) | {"interval"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BadRequest(f"canary: unknown {unknown}; give {sorted(allowed)}")
    settings = {**DEFAULTS, **{k: v for k, v in value.items() if k != "interval"}}
    steps = settings["steps"]
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps)
        or steps != sorted(set(steps))
        or not 1 <= steps[0] <= 99
        or steps[-1] != 100
    ):
        raise BadRequest(
            f"canary.steps={steps!r:.60}: rising percents ending at 100, the first from 1 to 99"
        )
    if "interval" in value:
        settings["interval_s"] = parse_window(value["interval"])
    header = settings["sticky_header"]
    if header is not None and (not isinstance(header, str) or not HEADER.fullmatch(header)):
        raise BadRequest(f"canary.sticky_header={header!r:.40}: a header name like X-User")
    if settings.get("notify") is not None and not isinstance(settings["notify"], dict):
        raise BadRequest('canary.notify: an object like {"on": "failure", "email": true}')
    settings["max_error_rate_increase"] = _number(settings, "max_error_rate_increase", 0, 1)
    settings["max_latency_ratio"] = _number(settings, "max_latency_ratio", 1, 100)
    settings["latency_slack_ms"] = _number(settings, "latency_slack_ms", 0, 60000)
    settings["min_requests"] = _number(settings, "min_requests", 1, 100000, int)
    return settings


def judge(stable: dict[str, Any] | None, canary: dict[str, Any] | None, s: dict) -> str | None:
    """Why the canary must go (its answers against the stable version's), or None."""
    if not canary or canary["requests"] < s["min_requests"]:
        return None
    base = stable or {"error_rate": 0.0}
    if canary["error_rate"] > base["error_rate"] + s["max_error_rate_increase"]:
        return (
            f"error rate {canary['error_rate']:.1%} against {base['error_rate']:.1%} of the "
            f"stable version (at most +{s['max_error_rate_increase']:.1%})"
        )
    # the p99 of fewer than 100 answers is their slowest one: one pause of the machine would
    # decide; below that the p90 is compared, and the median with it (the p90 of 10 answers
    # is their second slowest: two pauses of a busy machine). A canary slower on every call
    # shows in all three; one slower only in its tail waits for its 100th answer.
    q = "p99_ms" if canary["requests"] >= 100 else "p90_ms"
    both = (q,) if q == "p99_ms" else ("p50_ms", "p90_ms")
    if all(_slower(canary.get(k), base.get(k), s) for k in both):
        mine, theirs = canary[q], base[q]
        return (
            f"{q[:3]} latency {mine:.0f} ms against {theirs:.0f} ms of the stable version "
            f"(at most {s['max_latency_ratio']:g} times)"
        )
    return None


def _slower(mine: float | None, theirs: float | None, s: dict) -> bool:
    """Whether the canary's figure is over both latency limits against the stable one's."""
    if mine is None or theirs is None:
        return False
    return mine > theirs * s["max_latency_ratio"] and mine - theirs > s["latency_slack_ms"]


class Rollouts:
    """The rollout of each endpoint (the last one: a new deploy replaces a finished one)."""

    def __init__(
        self,
        root: Path | None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ):
        self.root, self.clock, self.rng = root, clock, rng
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], dict[str, Any] | None] = {}

    def _file(self, key: tuple[str, str]) -> Path | None:
        if self.root is None or not NAME.fullmatch(key[1]):  # never a path out of the folder
            return None
        return self.root / quote(key[0], safe="") / f"{key[1]}.json"

    def get(self, owner: str, name: str) -> dict[str, Any] | None:
        """The endpoint's rollout; only rollouts that exist are kept in memory (a name asked
        for that has none costs a look at the disk, never memory)."""
        key = (owner, name)
        with self._lock:
            return self._get(key)

    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        if key in self._records:
            return self._records[key]
        path, record = self._file(key), None
        if path is None or not path.exists():
            return None
        try:
            record = read_json(path, None)
        except DamagedStateFile as e:
            log.error("%s; the endpoint is served without a rollout", e)
        if isinstance(record, dict):
            self._records[key] = record
            return record
        return None

    def _save(self, record: dict[str, Any]) -> None:
        """Kept and written (the caller holds the lock)."""
        key = (record["owner"], record["name"])
        self._records[key] = record
        path = self._file(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_json(path, record, mode=0o600)

    def running(self, owner: str, name: str) -> bool:
        record = self.get(owner, name)
        return record is not None and record["state"] == RUNNING

    def start(
        self, owner: str, name: str, stable: int, canary: int, settings: dict[str, Any]
    ) -> dict[str, Any]:
        now = self.clock()
        percent = settings["steps"][0]
        record = {
            "owner": owner,
            "name": name,
            "stable": stable,
            "canary": canary,
            "state": RUNNING,
            "step": 0,
            "percent": percent,
            "step_started": now,
            "settings": settings,
            "reason": "",
            "history": [{"time": now, "event": f"version {canary} gets {percent}%"}],
        }
        with self._lock:
            self._save(record)
        return record

    def forget(self, owner: str, name: str) -> None:
        """A plain deploy or an undeploy: the last rollout's pin goes with it."""
        path = self._file((owner, name))
        with self._lock:
            self._records.pop((owner, name), None)
            if path is not None:
                path.unlink(missing_ok=True)

    def pin(self, owner: str, name: str, headers: Any) -> int | None:
        """The version a request that names none goes to (None: whatever the endpoint
        serves as its newest)."""
        record = self.get(owner, name)
        if record is None:
            return None
        if record["state"] == ROLLED_BACK:
            return record["stable"]  # until the next deploy, even while the folder goes
        if record["state"] != RUNNING:
            return None
        header = record["settings"].get("sticky_header")
        value = headers.get(header) if header else None
        if value:
            digest = hashlib.sha256(f"{name}\n{value}".encode()).digest()
            draw = int.from_bytes(digest[:4], "big") % 10000 / 100
        else:
            draw = self.rng() * 100
        return record["canary"] if draw < record["percent"] else record["stable"]

    def end(self, owner: str, name: str, state: str, reason: str) -> dict[str, Any] | None:
        """Promote or roll back a running rollout now (the pass, or its owner cancelling)."""
        with self._lock:  # one end only: the pass and the owner may race
            record = self._get((owner, name))
            if record is None or record["state"] != RUNNING:
                return None
            event = f"promoted: version {record['canary']} serves all requests"
            if state == ROLLED_BACK:
                event = f"rolled back to version {record['stable']}: {reason}"
            record = {
                **record,
                "state": state,
                "percent": 100 if state == PROMOTED else 0,
                "reason": reason,
                "ended": self.clock(),
                "folder": "pending",  # the model folder follows (folder_done), retried
                "history": [*record["history"], {"time": self.clock(), "event": event}],
            }
            self._save(record)
            return record

    def unfinished(self) -> list[dict[str, Any]]:
        """Ended rollouts whose model folder has not followed yet (the service died
        meanwhile, or the owner's folder refused): the service tries again."""
        with self._lock:
            return [
                dict(r)
                for r in self._records.values()
                if r["state"] != RUNNING and r.get("folder") == "pending"
            ]

    def folder_done(self, owner: str, name: str, ended: float) -> None:
        """The model folder of the rollout that ended at ``ended`` followed it."""
        with self._lock:
            record = self._get((owner, name))
            if record is not None and record.get("ended") == ended:
                self._save({**record, "folder": "done"})

    def run_pass(
        self,
        stats: Callable[[str, str, float], dict[str, dict[str, Any]]],
        ended: Callable[[dict[str, Any]], None],
    ) -> None:
        """Judge every running rollout's step; step up, promote or roll back. ``stats``:
        Traffic.version_stats; ``ended``: called with a rollout that just ended."""
        if self.root is not None and self.root.is_dir():
            for folder in self.root.iterdir():
                for path in folder.glob("*.json"):
                    self.get(_unquote(folder.name), path.stem)
        with self._lock:
            running = [dict(r) for r in self._records.values() if r["state"] == RUNNING]
        for record in running:
            try:
                self._judge_step(record, stats, ended)
            except Exception:  # one endpoint's trouble stops no other rollout
                log.exception("Rollout of %s/%s", record["owner"], record["name"])

    def _judge_step(self, record: dict[str, Any], stats: Callable, ended: Callable) -> None:
        owner, name, s = record["owner"], record["name"], record["settings"]
        seen = stats(owner, name, record["step_started"])
        reason = judge(seen.get(str(record["stable"])), seen.get(str(record["canary"])), s)
        if reason:
            done = self.end(owner, name, ROLLED_BACK, f"version {record['canary']}: {reason}")
            if done:
                ended(done)
            return
        now = self.clock()
        if now - record["step_started"] < s["interval_s"]:
            return
        step = record["step"] + 1
        if step >= len(s["steps"]) or s["steps"][step] >= 100:
            done = self.end(owner, name, PROMOTED, "")
            if done:
                ended(done)
            return
        percent = s["steps"][step]
        event = {"time": now, "event": f"version {record['canary']} gets {percent}%"}
        with self._lock:  # only if nobody ended it or stepped it meanwhile
            current = self._get((owner, name))
            if current is None or current["state"] != RUNNING or current["step"] != record["step"]:
                return
            self._save(
                {
                    **current,
                    "step": step,
                    "percent": percent,
                    "step_started": now,
                    "history": [*current["history"], event],
                }
            )


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def rollout_message(rollout: dict[str, Any], public_url: str = "") -> dict[str, Any]:
    """What the owner is told when a rollout ends (Notifications.send's message)."""
    name, canary = rollout["name"], rollout["canary"]
    promoted = rollout["state"] == PROMOTED
    what = "promoted" if promoted else "rolled back"
    text = rollout["history"][-1]["event"]
    return {
        "subject": f"Hubforge: version {canary} of {name} {what}",
        "text": f"Endpoint {name}: {text}.",
        "state": "succeeded" if promoted else "failed",
        "data": {
            "endpoint": name,
            "stable": rollout["stable"],
            "canary": canary,
            "state": rollout["state"],
            "reason": rollout["reason"],
            "link": public_url,
        },
    }
