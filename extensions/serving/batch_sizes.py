"""Rows per model call of local endpoints, for their monitoring view (#36).

Each endpoint process counts its model calls and the rows they took (the Prometheus
histogram ``hubforge_serving_batch_size`` at its ``/metrics``). Every 10 s the service reads
it from each copy (with the gateway's key: nobody else can) and adds the increase since the
last read to the endpoint's traffic bin (serving.traffic). A process the service sees for the
first time counts from then on, unless it started after the service (then all its calls
are new). On Kubernetes the cluster's Prometheus scrapes the same metric.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from .traffic import Traffic

log = logging.getLogger(__name__)
METRIC = "hubforge_serving_batch_size"


MAX_PAGE = 1 << 20  # bytes of a /metrics page read at most
DEADLINE = 3.0  # seconds one page may take, all of it


def read_batches(text: str) -> tuple[float, float] | None:
    """(model calls, rows) from a /metrics page; None without the histogram or with
    figures no server writes (negative, not finite: the process runs as its owner, who may
    have put anything there)."""
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        found = {s.name: s.value for s in family.samples if s.name.endswith(("_count", "_sum"))}
        calls, rows = found.get(f"{METRIC}_count"), found.get(f"{METRIC}_sum")
        if calls is None or rows is None:
            return None
        if not all(math.isfinite(v) and 0 <= v < 1e15 for v in (calls, rows)):
            return None
        return calls, rows
    return None


def fetch(session: requests.Session, url: str, headers: dict[str, str]) -> str | None:
    """A page of at most MAX_PAGE bytes within DEADLINE seconds (None otherwise): a slow or
    endless answer costs this pass 3 s, never the service's memory."""
    deadline = time.monotonic() + DEADLINE
    try:
        with session.get(url, headers=headers, timeout=DEADLINE, stream=True) as r:
            if r.status_code != 200:
                return None
            body = b""
            while chunk := r.raw.read1(65536, decode_content=True):  # (what has come)
                body += chunk
                if len(body) > MAX_PAGE or time.monotonic() > deadline:
                    return None
    except requests.RequestException:
        return None
    return body.decode("utf-8", "replace")


class BatchSizes:
    def __init__(self, traffic: Traffic, started: float | None = None):
        self.traffic = traffic
        self.started = time.time() if started is None else started
        self._last: dict[tuple[int, float], tuple[float, float]] = {}
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def run_pass(self, endpoints: Any) -> None:
        copies = getattr(endpoints, "copies", None)
        if copies is None:  # (Kubernetes: Prometheus reads the pods)
            return
        seen = set()
        for copy in copies():
            key = (copy["pid"], copy["create_time"])
            seen.add(key)
            try:
                text = fetch(self._session, f"{copy['url']}/metrics", copy["headers"])
                read = read_batches(text) if text is not None else None
            except Exception:  # whatever the page says: this copy's figures are not counted
                read = None
            if read is None:
                continue
            previous = self._last.get(key)
            self._last[key] = read
            if previous is None:
                if copy["create_time"] < self.started:
                    continue  # its calls before the service's start are not this window's
                previous = (0.0, 0.0)
            calls, rows = read[0] - previous[0], read[1] - previous[1]
            if calls > 0 and rows >= 0:
                self.traffic.batches(copy["owner"], copy["name"], int(calls), round(rows))
        for key in set(self._last) - seen:  # stopped processes
            del self._last[key]
