"""The proxy and the services, kept by `hubforge up` through restarts of the hub.

Under `up` the hub starts none of them (``ConfigurableHTTPProxy.should_start = False``, its
services without a command: :func:`hubforge.hub.config.configure`). `up` starts them before
the hub, with what JupyterHub would have given them, starts one again when it exits (the
proxy with the routes it had), and stops them after the last hub. So a hub that crashes
takes no route with it: the proxy still sends ``/services/hubforge/`` to the service, which
keeps answering every token it checked within the last minute while the hub is away (others:
503 in TF Serving's error shape, until the hub answers again).

With per-user accounts each one is the hub account's relay to the privileged helper, which
starts the real one as its own account (:mod:`hubforge.hub_services`), as when the hub asked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote

import requests

from .processes import MARKER

# Set in the hub's environment by `up`: the hub leaves the proxy and services to it.
KEPT_BY_UP = "HUBFORGE_KEPT_BY_UP"
# What JupyterHub's service spawner keeps of its own environment (Spawner.env_keep)
ENV_KEEP = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "TZ")
ROUTES_EVERY = 2.0  # seconds between copies of the proxy's routes
WATCH_EVERY = 0.2


class DataPathError(RuntimeError):
    """The proxy could not start; the message says what to check."""


@dataclass
class Part:
    """One process `up` keeps running: the proxy, the hubforge service or Label Studio."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: str
    account: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    starts: list[float] = field(default_factory=list)


def new_proxy_token() -> str:
    """The proxy's API token for one `up`: the same for every hub it starts."""
    return secrets.token_hex(32)


def hub_env(proxy_token: str) -> dict[str, str]:
    """What tells the hub that `up` keeps its proxy and services (hub.config reads it)."""
    return {KEPT_BY_UP: "1", "CONFIGPROXY_AUTH_TOKEN": proxy_token}


def _kept() -> dict[str, str]:
    return {k: os.environ[k] for k in ENV_KEEP if k in os.environ}


def service_env(workbench: Any, ports: dict[str, str], entry: dict[str, Any]) -> dict[str, str]:
    """What JupyterHub tells a service it starts about itself and the hub."""
    base = workbench.base_url
    name = entry["name"]
    env = {
        "JUPYTERHUB_SERVICE_NAME": name,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{ports['HUBFORGE_HUB_PORT']}{base}hub/api",
        "JUPYTERHUB_BASE_URL": base,
    }
    if entry.get("url"):
        env["JUPYTERHUB_SERVICE_URL"] = entry["url"]
        env["JUPYTERHUB_SERVICE_PREFIX"] = f"{base}services/{name}/"
    if entry.get("api_token"):
        env["JUPYTERHUB_API_TOKEN"] = entry["api_token"]
    return env


def proxy_args(workbench: Any, ports: dict[str, str]) -> list[str]:
    """configurable-http-proxy's flags, as JupyterHub gives them, except its error pages:
    the service's (JSON for endpoint calls, the hub's page for the rest; see
    :mod:`hubforge.service.proxy_errors`)."""
    from .service.names import SERVICE_NAME

    service = f"http://127.0.0.1:{ports['HUBFORGE_SERVICE_PORT']}{workbench.base_url}"
    errors = f"{service}services/{SERVICE_NAME}/proxy-error"
    return [
        *("--ip", workbench.ip, "--port", str(workbench.port)),
        *("--api-ip", "127.0.0.1", "--api-port", ports["HUBFORGE_PROXY_API_PORT"]),
        *("--error-target", errors, "--log-level", "info"),
    ]


def parts(workbench: Any, ports: dict[str, str], hub_account: Any, token: str) -> list[Part]:
    """The proxy first, then the services of :func:`hubforge.hub.config.services`."""
    from .hub.config import find_proxy, relay_command, services

    marker = {MARKER: workbench.data_dir, "HUBFORGE_DIR": workbench.data_dir}
    proxy_env = {**_kept(), **marker, "CONFIGPROXY_AUTH_TOKEN": token}
    entries = services(workbench, bare=workbench.isolation == "accounts")
    if workbench.isolation == "accounts":  # relays of the hub's account to the helper
        relay = relay_command(workbench)
        account = {"user": hub_account.uid, "group": hub_account.gid, "extra_groups": []}
        proxy = [*relay, "proxy", "--", *proxy_args(workbench, ports)]
        found = [Part("proxy", proxy, proxy_env, "/", account)]
        for entry in entries:
            env = {**_kept(), **marker, **service_env(workbench, ports, entry)}
            found.append(Part(entry["name"], [*relay, entry["name"]], env, "/", account))
        return found
    found = [Part("proxy", [find_proxy(), *proxy_args(workbench, ports)], proxy_env, "/")]
    for entry in entries:
        env = {**_kept(), **entry.get("environment", {}), **service_env(workbench, ports, entry)}
        cwd = entry.get("cwd") or str(workbench.state_dir)
        found.append(Part(entry["name"], list(entry["command"]), env, cwd))
    return found


class DataPath:
    """Starts the parts, keeps them running from a thread, and stops them."""

    def __init__(
        self, parts: list[Part], api_url: str, token: str, output: IO[bytes] | None = None
    ):
        self.parts = parts
        self.api_url = api_url.rstrip("/") + "/api/routes"
        self.token = token
        self.output = output
        self.routes: dict[str, dict[str, Any]] = {}
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self, part: Part) -> None:
        from .lifecycle import _die_with_parent

        part.starts.append(time.monotonic())
        part.proc = subprocess.Popen(
            part.command,
            env=part.env,
            cwd=part.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
            preexec_fn=_die_with_parent,  # SIGTERM when `up` dies; its own session
            **part.account,
        )

    def start(self, timeout: float = 60) -> None:
        """Start every part; return once the proxy's API answers (the hub needs it)."""
        for part in self.parts:
            self._start(part)
        self._wait_for_proxy(time.monotonic() + timeout)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _get_routes(self) -> dict[str, dict[str, Any]] | None:
        headers = {"Authorization": f"token {self.token}"}
        try:
            r = requests.get(self.api_url, headers=headers, timeout=5)
        except requests.RequestException:
            return None
        return r.json() if r.status_code == 200 else None

    def _wait_for_proxy(self, deadline: float) -> None:
        proxy = self.parts[0]
        while self._get_routes() is None:
            if proxy.proc is not None and proxy.proc.poll() is not None:
                raise DataPathError(
                    f"the proxy exited with status {proxy.proc.returncode} as it started: "
                    "see the hub's log (is the port in use?)"
                )
            if time.monotonic() > deadline:
                raise DataPathError(
                    f"the proxy's API at {self.api_url} did not answer: another program "
                    "may hold its port (start again: each start picks new ports); "
                    "see the hub's log"
                )
            time.sleep(0.1)

    def _put_routes_back(self) -> None:
        """The routes the proxy had before it exited, as the hub had made them."""
        headers = {"Authorization": f"token {self.token}"}
        # the services' routes first (endpoint calls), the hub's and users' servers' after
        order = sorted(self.routes.items(), key=lambda item: "service" not in item[1])
        for spec, route in order:
            body = {k: v for k, v in route.items() if k not in ("last_activity",)}
            # the API lists routes unescaped; escaped again as the hub makes them
            url = self.api_url + quote(spec, safe="@/~")
            with contextlib.suppress(requests.RequestException):
                requests.post(url, json=body, headers=headers, timeout=5)

    def _watch(self) -> None:
        copied = 0.0
        while not self.stopping.wait(WATCH_EVERY):
            for part in self.parts:
                if part.proc is None or part.proc.poll() is None or self.stopping.is_set():
                    continue
                self._start_again(part)
            if time.monotonic() - copied > ROUTES_EVERY:
                copied = time.monotonic()
                routes = self._get_routes()
                if routes is not None:
                    self.routes = routes

    def _start_again(self, part: Part) -> None:
        """Start an exited part again (at once the first time within a minute, then after a
        growing pause); the proxy with the routes it had."""
        now = time.monotonic()
        recent = [t for t in part.starts if now - t < 60]
        print(
            f"The {part.name} exited with status {part.proc.returncode}; starting it again"
            + (" with its routes" if part.name == "proxy" else ""),
            file=sys.stderr,
            flush=True,
        )
        if self.stopping.wait(min(5.0, 0.5 * (len(recent) - 1)) if recent else 0):
            return
        self._start(part)
        if part.name == "proxy":
            with contextlib.suppress(DataPathError):
                self._wait_for_proxy(time.monotonic() + 30)
            self._put_routes_back()

    def stop(self, grace: float = 40) -> None:
        """Stop the services (requests in flight finish within their grace), then the
        proxy that carries their answers; SIGKILL after ``grace`` seconds."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        services = [p.proc for p in self.parts if p.name != "proxy" and p.proc is not None]
        proxy = [p.proc for p in self.parts if p.name == "proxy" and p.proc is not None]
        for group in (services, proxy):
            for proc in group:
                if proc.poll() is None:
                    with contextlib.suppress(OSError):
                        proc.terminate()
            deadline = time.monotonic() + grace
            for proc in group:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
