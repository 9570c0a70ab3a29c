"""Waiting, as `hubforge up` starts, until the hub, its services and Label Studio answer."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import requests


def _wait_ready(
    url: str,
    hub: subprocess.Popen,
    timeout: float = 300,
    first: tuple[tuple[str, str], ...] = (),
    say: Callable[[str], None] | None = None,
) -> bool:
    """Until the hub answers through the proxy. ``first``: (component, loopback URL) pairs
    (the hub itself, its services) that answer before the hub adds its proxy routes; waiting
    on them first keeps the proxy from logging a 404 error for every early try. ``say``
    gets one line per component as it becomes ready."""
    start = time.monotonic()
    deadline = start + timeout
    steps = [
        *((name, f, 1.0) for name, f in first),
        ("proxy routes", url + "hub/api/", 0.5),
    ]
    for name, target, pause in steps:
        while True:
            if hub.poll() is not None or time.monotonic() > deadline:
                return False
            try:
                status = requests.get(target, timeout=5, allow_redirects=False).status_code
                if status == 200 or (target != url + "hub/api/" and status < 500):
                    break  # the hub, or a service that is up (a starting one answers 503)
            except requests.RequestException:
                pass
            time.sleep(pause)
        if say:  # Label Studio answers "starting" first: its API is announced when ready
            state = "listening" if name == "Label Studio" else "ready"
            say(f"  {name:<14} {state}  ({time.monotonic() - start:4.1f} s)")
    return True


def _announce_label_studio(health: str, start: float, timeout: float = 900) -> None:
    """One line when Label Studio answers its API (the real time), or why it will not."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = requests.get(health, timeout=5)
                if r.status_code == 200:
                    took = time.monotonic() - start
                    print(f"  Label Studio   ready  ({took:4.1f} s)", flush=True)
                    return
                if r.status_code == 503 and r.json().get("status") == "damaged":
                    print(
                        f"Label Studio cannot start: {r.json()['error']}",
                        file=sys.stderr,
                    )
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)

    threading.Thread(target=watch, name="label-studio-ready", daemon=True).start()
