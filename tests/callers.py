"""Callers of an endpoint that record every answer (outage tests and benchmarks)."""

from __future__ import annotations

import threading
import time

import requests

# A calling thread's pause after each answer (or refused connection). Unpaced, a few threads
# kept the proxy, the gateway and the model server busy on both cores and took the CPU that
# the restart or deploy the test watched needed (the replicas, supervision and serving-hub
# files: 173 -> 140 CPU-s once paced); paced, each thread still calls ~30 times a second,
# so an outage of a few hundredths of a second is still seen.
PACE = 0.02


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Callers:
    """``n`` threads calling an endpoint (``url``, TF Serving's predict) one call after
    another, ``pace`` seconds apart; each answer recorded as (time, what it was: "ok" for
    ``expected``, "no connection", or the status with the body's "error")."""

    def __init__(
        self, url: str, token: str, n: int, rows: dict, expected: dict, pace: float = PACE
    ):
        self.url, self.pace = url, pace
        self.headers = {"Authorization": f"token {token}"}
        self.n, self.rows, self.expected = n, rows, expected
        self.answers: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._call) for _ in range(n)]

    def _call(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                r = session.post(self.url, json=self.rows, headers=self.headers, timeout=30)
                what = self._what(r)
            except requests.ConnectionError:  # refused, or cut by the kill
                what = "no connection"
            self.answers.append((time.monotonic(), what))
            self.stop.wait(self.pace)

    def _what(self, r: requests.Response) -> str:
        kind = r.headers.get("Content-Type", "")
        try:
            body = r.json() if "json" in kind else None
        except ValueError:
            body = None
        if r.status_code == 200 and body == self.expected:
            return "ok"
        if isinstance(body, dict) and "error" in body:
            return f"{r.status_code} {body['error']}"
        return f"{r.status_code} {kind} {r.text[:80]}"

    def __enter__(self) -> Callers:
        for t in self.threads:
            t.start()
        wait_for(lambda: len(self.answers) >= self.n, 60, "the callers' first answers")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def failed(self) -> list[tuple[float, str]]:
        return [a for a in self.answers if a[1] != "ok"]

    def since_last_failure(self, start: float) -> float:
        failed = self.failed()
        last = max(start, failed[-1][0]) if failed else start
        return time.monotonic() - last

    def outage(self) -> float:
        failed = self.failed()
        return failed[-1][0] - failed[0][0] if failed else 0.0
