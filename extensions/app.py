"""The Jupyter server extension: REST handlers under /hubforge/api/ in each user's server."""

from __future__ import annotations

import asyncio
import json
import os

from jupyter_server.auth.decorator import authorized
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import web

from . import __version__
from .app_base import HubforgeAPIHandler
from .client import ServiceClient, ServiceError


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
        }
        if ServiceClient.available():
            try:
                status["service"] = await asyncio.to_thread(ServiceClient().status)
            except ServiceError as e:
                status["service"] = {"error": str(e)}
        self.finish(json.dumps(status))


class HubforgeExtension(ExtensionApp):
    """Hubforge's REST API inside JupyterLab's server."""

    name = "hubforge"

    def initialize_handlers(self) -> None:
        from .jobs.extension_handlers import routes as job_routes

        prefix = "/hubforge/api"
        self.handlers.append((url_path_join(prefix, "status"), StatusHandler))
        self.handlers.extend(job_routes(prefix))
