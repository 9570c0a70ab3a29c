"""jupyter-server-proxy's generic routes in a user's server, kept to the user's own ports.

jupyter-server-proxy serves ``<server>/proxy/<port>/…``, ``/proxy/absolute/<port>/…`` and
``/proxy/<host>:<port>/…`` for any port on loopback, and loopback is shared by every account
on the machine: another user's page on a loopback port, opened through this server, would
run in this server's origin (its cookies, its API). The handlers here take the same routes
(Jupyter loads server extensions in name order, so ``hubforge``'s routes come before
``jupyter_server_proxy``'s and match first) and:

* proxy a port only while every socket listening on it belongs to this server's own
  account (``/proc/net/tcp`` and ``tcp6``: state LISTEN, the uid column); 403 otherwise;
* send what they proxy with ``Content-Security-Policy: sandbox …`` without
  ``allow-same-origin``: a page the user's own process serves runs in an opaque origin, with
  neither the server's cookies nor its API. TensorBoards are exempt (the dashboard needs its
  origin): the ports in this account's TensorBoard info files (in its private ``TMPDIR``,
  see ``hubforge.channels``) and in its recorded instances.

Named server-proxy apps (``<server>/label-studio/``) keep jupyter-server-proxy's handlers.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import stat
import tempfile
from pathlib import Path
from typing import Any

from jupyter_server_proxy.config import ServerProxy as ServerProxyConfig
from jupyter_server_proxy.handlers import LocalProxyHandler, RemoteProxyHandler
from tornado import web

SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
LOOPBACK = frozenset({"localhost", "127.0.0.1"})
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def listening_uids(port: int) -> set[int]:
    """The accounts (uids) with a socket listening on TCP ``port``, any address, v4 and v6."""
    uids = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split()
                    listening = len(fields) > 7 and fields[3] == _LISTEN
                    if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        uids.add(int(fields[7]))
        except (OSError, ValueError):
            continue
    return uids


def refusal(host: str, port: int) -> str | None:
    """Why this server does not proxy ``host:port``; None when it does."""
    me = os.getuid()
    try:
        account = pwd.getpwuid(me).pw_name
    except KeyError:
        account = f"uid {me}"
    own = f"This server proxies only ports on loopback that its own account ({account}) listens on"
    if host not in LOOPBACK:
        return f"{own}, not {host}."
    uids = listening_uids(port)
    if not uids:
        return f"Nothing listens on port {port}. {own}."
    if uids != {me}:
        return f"Port {port} is another account's. {own}."
    return None


def tensorboard_ports() -> set[int]:
    """Ports of this account's TensorBoards: its info files (TensorBoard writes them in
    ``$TMPDIR/.tensorboard-info``; only files this account owns count) and the instances
    hubforge recorded for it."""
    ports: set[int] = set()
    info_dir = Path(tempfile.gettempdir()) / ".tensorboard-info"
    try:
        entries = list(info_dir.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        try:
            info = entry.lstat()
            mine = stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()
            if mine and entry.suffix == ".info":
                ports.add(int(json.loads(entry.read_text())["port"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    from .tensorboard.store import InstanceStore

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        ports.update(int(r["port"]) for r in InstanceStore().read().values())
    return ports


class _OwnPorts:
    """Before jupyter-server-proxy's handler: the owner check, then the sandbox header."""

    path_args: list[str]
    _sandboxed = True
    _csp_sent = False

    def _target(self) -> tuple[str, int]:
        raise NotImplementedError

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        await super().prepare(*args, **kwargs)  # type: ignore[misc]
        if not self.current_user:  # refused, or sent to log in, by jupyter-server-proxy
            return
        host, port = self._target()
        why = refusal(host, port)
        if why:
            raise web.HTTPError(403, why)
        self._sandboxed = port not in tensorboard_ports()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # jupyter-server-proxy's WebSocketHandlerMixin sets ``flush`` (and others) on the
        # instance, so a method of a subclass would never run: wrap what it set
        flush = self.flush

        def flush_sandboxed(*args: Any, **kwargs: Any) -> Any:
            # the first flush sends the headers: the proxied ones are in place by then
            if self._sandboxed and not self._csp_sent:
                self._csp_sent = True
                self.add_header("Content-Security-Policy", SANDBOX)
            return flush(*args, **kwargs)

        self.flush = flush_sandboxed


class OwnLocalProxyHandler(_OwnPorts, LocalProxyHandler):
    """``/proxy/<port>/…`` and ``/proxy/absolute/<port>/…``."""

    def _target(self) -> tuple[str, int]:
        return "localhost", int(self.path_args[0])


class OwnRemoteProxyHandler(_OwnPorts, RemoteProxyHandler):
    """``/proxy/<host>:<port>/…``: loopback names only, own ports only."""

    def _target(self) -> tuple[str, int]:
        return self.path_args[0], int(self.path_args[1])


def routes(serverapp: Any) -> list[tuple]:
    """jupyter-server-proxy's four generic routes (``setup_handlers``), with these handlers."""
    config = ServerProxyConfig(parent=serverapp)
    rewrite = config.non_service_rewrite_response
    remote = {"host_allowlist": config.host_allowlist, "rewrite_response": rewrite}
    return [
        (r"/proxy/([^/:@]+):(\d+)(/.*|)", OwnRemoteProxyHandler, {"absolute_url": False, **remote}),
        (
            r"/proxy/absolute/([^/:@]+):(\d+)(/.*|)",
            OwnRemoteProxyHandler,
            {"absolute_url": True, **remote},
        ),
        (
            r"/proxy/(\d+)(/.*|)",
            OwnLocalProxyHandler,
            {"absolute_url": False, "rewrite_response": rewrite},
        ),
        (
            r"/proxy/absolute/(\d+)(/.*|)",
            OwnLocalProxyHandler,
            {"absolute_url": True, "rewrite_response": rewrite},
        ),
    ]
