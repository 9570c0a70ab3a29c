"""Callers of an endpoint that record every answer (outage tests and benchmarks)."""

from __future__ import annotations

import threading
import time

import requests


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Callers:
    """``n`` threads calling an endpoint (``url``, TF Serving's predict) as fast as it answers,
    each answer recorded as (time, what it was: "ok" for ``expected``, "no connection", or the
    status with the body's "error")."""

    def __init__(self, url: str, token: str, n: int, rows: dict, expected: dict):
        self.url = url
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
