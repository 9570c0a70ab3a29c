"""The Jupyter server extension: REST handlers under /hubforge/api/ in each user's server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, default

from . import __version__, channels
from .app_base import HubforgeAPIHandler
from .client import ServiceClient, ServiceError
from .labeling.server import BIND_COOKIE


class StatusHandler(HubforgeAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        status: dict = {
            "version": __version__,
            "user": self.current_user.username,
            "data": os.environ.get("HUBFORGE_DATA"),
            "profile": os.environ.get("HUBFORGE_PROFILE"),
            "gpus": [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d],
            "service": None,
            # where this server's files start: the sidebar opens a job's notebook and figures
            "root_dir": str(Path(self.settings["server_root_dir"]).expanduser().resolve()),
        }
        if ServiceClient.available():
            try:
                status["service"] = await asyncio.to_thread(ServiceClient().status)
            except ServiceError as e:
                status["service"] = {"error": str(e)}
        self.finish(json.dumps(status))


class LabelStudioOpenHandler(HubforgeAPIHandler):
    """Opens Label Studio's UI as this user: asks the service for a signed one-minute link
    bound to this browser (a nonce in a cookie only the sign-in route receives, its hash in
    the link) and redirects the browser to it (``?next=/projects/3/data``). A link copied to
    another browser does not work there."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        if not ServiceClient.available():
            raise web.HTTPError(503, "Label Studio runs with the hub; this server has none")
        nonce = secrets.token_urlsafe(32)
        params = {
            "next": self.get_argument("next", "/projects/"),
            "bind": hashlib.sha256(nonce.encode()).hexdigest(),
        }
        if self.get_argument("owner", ""):  # a teammate's shared project
            params["owner"] = self.get_argument("owner")
        try:
            link = await asyncio.to_thread(
                ServiceClient().request, "GET", "labeling/login-link", params=params
            )
        except ServiceError as e:
            if e.status == 403:  # e.g. a teammate's project that is no longer shared
                raise web.HTTPError(403, str(e)) from None
            raise web.HTTPError(503, f"Label Studio is not available: {e}") from None
        self.set_cookie(
            BIND_COOKIE,
            nonce,
            path=urlsplit(link["url"]).path,  # sent to the sign-in route only
            httponly=True,
            samesite="Lax",
            expires_days=None,
        )
        self.redirect(link["url"])


BUSY_ACTIVITY = "hubforge_busy_kernel_last_activity"


def busy_kernels_are_activity(serverapp: object) -> bool:
    """A kernel running a cell is activity even when the cell prints nothing for an hour:
    jupyter_server counts only kernel messages and requests (``last_activity``), so the
    idle cullers (the hub's, the GPU-aware one of the queue) would stop a server in the
    middle of a long cell. Any setting ending in ``_last_activity`` counts: this one is
    kept at now while a kernel is busy. True when one is."""
    manager = serverapp.kernel_manager  # type: ignore[attr-defined]
    busy = any(k.get("execution_state") == "busy" for k in manager.list_kernels())
    if busy:
        serverapp.web_app.settings[BUSY_ACTIVITY] = datetime.now(UTC)  # type: ignore[attr-defined]
    return busy


def busy_check_interval(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between two looks for busy kernels: at most the server's activity reports'
    interval (``JUPYTERHUB_ACTIVITY_INTERVAL``), so that each report carries a busy kernel's
    fresh time (checked only every 10 s, a report every 2 s and an idle limit of 8 s stopped
    a server in the middle of a silent cell); at most 10 s, at least 1 s."""
    try:
        reports = float(environ.get("JUPYTERHUB_ACTIVITY_INTERVAL", "") or 10)
    except ValueError:
        reports = 10
    return max(1.0, min(10.0, reports))


class HubforgeExtension(ExtensionApp):
    """Hubforge's REST API inside JupyterLab's server."""

    name = "hubforge"

    tensorboard_idle_timeout = Float(
        config=True,
        help="""Seconds without a request after which a TensorBoard stops
        (default: $HUBFORGE_TENSORBOARD_IDLE_TIMEOUT or 3600).""",
    )

    @default("tensorboard_idle_timeout")
    def _default_idle(self) -> float:
        return float(os.environ.get("HUBFORGE_TENSORBOARD_IDLE_TIMEOUT", "3600"))

    def initialize_settings(self) -> None:
        # Started by the local spawner: TMPDIR -> this server's private folder, before any
        # kernel, terminal or TensorBoard starts (per-user channels, see hubforge.channels)
        temp = channels.activate()
        if temp is not None:
            self.log.info("Temp files of this server and what it starts: %s", temp)
        # %tensorboard renders its iframe through this server's proxy, in both modes (the
        # local spawner sets it too; on Kubernetes only the server knows its own prefix)
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or self.serverapp.base_url
        os.environ.setdefault("TENSORBOARD_PROXY_URL", url_path_join(prefix, "proxy/%PORT%/"))

    def initialize_handlers(self) -> None:
        from . import proxy_guard
        from .automl.handlers import routes as automl_routes
        from .jobs.extension_handlers import routes as job_routes
        from .schedules.extension_handlers import routes as schedule_routes
        from .serving.mobile_handlers import routes as mobile_routes
        from .sidebar_handlers import routes as sidebar_routes
        from .tensorboard.handlers import Lifecycle
        from .tensorboard.handlers import routes as tensorboard_routes

        # before jupyter_server_proxy's own: its generic /proxy/ routes, own ports only
        self.handlers.extend(proxy_guard.routes(self.serverapp))
        prefix = "/hubforge/api"
        self.handlers.append((url_path_join(prefix, "status"), StatusHandler))
        self.handlers.extend(job_routes(prefix))
        self.handlers.extend(tensorboard_routes(prefix))
        self.handlers.extend(sidebar_routes(prefix))
        self.handlers.extend(automl_routes(prefix))
        self.handlers.extend(schedule_routes(prefix))
        self.handlers.extend(mobile_routes(prefix))
        self.handlers.append(("/hubforge/labeling/open", LabelStudioOpenHandler))
        self.tensorboards = Lifecycle(self.tensorboard_idle_timeout, self.log)

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        await super()._start_jupyter_server_extension(serverapp)
        settings = serverapp.web_app.settings
        log_function = settings.get("log_function")

        def log_and_track(handler: web.RequestHandler) -> None:
            self.tensorboards.track(handler)
            if log_function:
                log_function(handler)

        settings["log_function"] = log_and_track
        # Restarting recorded TensorBoards takes seconds: do not hold up the server's start.
        self._restoring = asyncio.ensure_future(asyncio.to_thread(self.tensorboards.restore))
        self.tensorboards.culler.start()
        self._busy = PeriodicCallback(
            lambda: busy_kernels_are_activity(serverapp), 1000 * busy_check_interval()
        )
        self._busy.start()

    async def stop_extension(self) -> None:
        self.tensorboards.culler.stop()
        await asyncio.to_thread(self.tensorboards.stop_all)
