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
import time
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from .traffic import Traffic

log = logging.getLogger(__name__)
METRIC = "hubforge_serving_batch_size"


def read_batches(text: str) -> tuple[float, float] | None:
    """(model calls, rows) from a /metrics page; None without the histogram."""
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        found = {s.name: s.value for s in family.samples if s.name.endswith(("_count", "_sum"))}
        if f"{METRIC}_count" in found and f"{METRIC}_sum" in found:
            return found[f"{METRIC}_count"], found[f"{METRIC}_sum"]
    return None


class BatchSizes:
    def __init__(self, traffic: Traffic, started: float | None = None, timeout: float = 2.0):
        self.traffic, self.timeout = traffic, timeout
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
                r = self._session.get(
                    f"{copy['url']}/metrics", headers=copy["headers"], timeout=self.timeout
                )
                read = read_batches(r.text) if r.status_code == 200 else None
            except (requests.RequestException, ValueError):
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
            if calls > 0:
                self.traffic.batches(copy["owner"], copy["name"], int(calls), round(rows))
        for key in set(self._last) - seen:  # stopped processes
            del self._last[key]
