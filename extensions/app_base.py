"""The base handler of every Hubforge REST view in a user's Jupyter server."""

from __future__ import annotations

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin


class HubforgeAPIHandler(ExtensionHandlerMixin, APIHandler):
    """Authenticated (token or cookie + XSRF on writes), JSON errors without tracebacks."""

    auth_resource = "hubforge"
