"""The hub's managed services and its proxy, started by the privileged helper for the hub.

The hub asks by name only (``hubforge``, ``label-studio``, ``proxy``); what runs, with which
environment and as which account is built here, from the workbench's own configuration
(:func:`hubforge.hub.config.services`), never taken from the hub: the hub passes on only what
JupyterHub tells a service about itself (``JUPYTERHUB_*``, the proxy's token) and, for the
proxy, its command-line flags. The request's child process of the helper stays with the
service: it stops the service when the hub's relay closes the connection (the hub stopped it,
or died), and tells the relay when the service ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
from typing import Any

from .helper_client import PASSED_ON, PASSED_ON_NAMES
from .processes import MARKER

STOP_GRACE = 35  # the keeper gives its service 30 s


class ServiceRefused(RuntimeError):
    """Not a service the helper starts; the message says which are."""


def entries() -> dict[str, dict[str, Any]]:
    """name -> JupyterHub-style entry (command, environment, cwd, user) of this workbench."""
    from .hub.config import proxy_entry, services
    from .workbench import load_workbench

    workbench = load_workbench(os.environ.get("HUBFORGE_CONFIG") or None)
    found = {e["name"]: e for e in services(workbench)}
    found["proxy"] = proxy_entry(workbench)
    return found


def preload() -> None:
    """Import what :func:`entries` reads (the hub's configuration module and what it
    imports: ~0.2 CPU-s, ~0.7 while it brought JupyterHub's service auth) once, in the
    helper, before it forks a child per request: each service start then reads the
    workbench's configuration in ~0.03 CPU-s instead of importing it all again (three times
    at every `hubforge up`)."""
    import hubforge.hub.config
    import hubforge.workbench  # noqa: F401


def _popen_account(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def low_port_prefix(user: str) -> list[str]:
    """What starts a command as ``user`` with only the capability to bind ports below 1024
    (an ambient CAP_NET_BIND_SERVICE, nothing else of root's): the proxy of a workbench on
    port 80 or 443 never runs as root (util-linux's setpriv, on every Debian)."""
    entry = pwd.getpwnam(user)
    caps = "-all,+net_bind_service"
    return [
        shutil.which("setpriv") or "setpriv",
        *(f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"),
        *(f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}"),
        "--pdeathsig=TERM",  # a change of uid clears the one set before: set it again
        "--",
    ]


def _die_with_helper() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


NAMES = ("hubforge", "label-studio", "proxy")


# The flags JupyterHub starts configurable-http-proxy with, each with one plain value; any
# other (--storage-backend loads a file of JavaScript, --pid-file writes anywhere) is refused.
PROXY_FLAGS = {"--ip", "--port", "--api-ip", "--api-port", "--error-target", "--log-level"}
PROXY_SWITCHES = {"--host-routing"}


def proxy_flags(args: list[str]) -> None:
    """Refuse proxy arguments other than PROXY_FLAGS (each with a value) and PROXY_SWITCHES."""
    i = 0
    while i < len(args):
        flag = args[i]
        if flag in PROXY_SWITCHES:
            i += 1
            continue
        if flag not in PROXY_FLAGS or i + 1 >= len(args) or args[i + 1].startswith("-"):
            allowed = ", ".join(sorted(PROXY_FLAGS | PROXY_SWITCHES))
            raise ServiceRefused(f"the proxy takes only {allowed} from the hub, not {flag!r}")
        if flag.endswith("port") and not args[i + 1].isdigit():
            raise ServiceRefused(f"{flag} takes a port number")
        i += 2


def start(request: dict[str, Any], fds: list[int]) -> subprocess.Popen:
    name = request.get("name")
    if name not in NAMES:
        raise ServiceRefused(f"no service {name!r}; the helper starts {', '.join(NAMES)}")
    args = request.get("argv") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ServiceRefused("'argv' is a list of strings")
    if args and name != "proxy":
        raise ServiceRefused(f"{name} takes no arguments from the hub")
    proxy_flags(args)
    given = request.get("env") or {}
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise ServiceRefused("'env' maps names to strings")
    known = entries()
    if name not in known:
        raise ServiceRefused(f"{name} is not configured on this workbench")
    entry = known[name]
    env = dict(
        entry.get("environment")
        or {
            "PATH": os.environ.get("PATH", ""),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            MARKER: os.environ.get("HUBFORGE_DIR", ""),  # found and stopped with the hub
        }
    )
    env.update({k: v for k, v in given.items() if k.startswith(PASSED_ON) or k in PASSED_ON_NAMES})
    out = fds[0] if fds else subprocess.DEVNULL
    err = fds[1] if len(fds) > 1 else out
    command, account = [*entry["command"], *args], _popen_account(entry.get("user"))
    if entry.get("bind_below_1024") and entry.get("user"):
        command, account = [*low_port_prefix(entry["user"]), *command], {}
    return subprocess.Popen(
        command,
        env=env,
        cwd=entry.get("cwd") or "/",
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,
        preexec_fn=_die_with_helper,
        **account,
    )


def run(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """Start the service, then stay with it (in the helper's child for this request)."""
    _die_with_helper()  # the helper stops: so does this child, and (PDEATHSIG) the service
    proc = start(request, fds)
    for fd in fds:
        os.close(fd)
    fds.clear()
    conn.settimeout(None)
    conn.sendall((json.dumps({"ok": True, "pid": proc.pid}) + "\n").encode())
    while proc.poll() is None:
        ready, _, _ = select.select([conn], [], [], 0.5)
        if ready:
            with contextlib.suppress(OSError):
                conn.recv(1)  # end of the relay's side: stop the service
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            break
    with contextlib.suppress(OSError):
        conn.sendall((json.dumps({"exited": proc.returncode}) + "\n").encode())
