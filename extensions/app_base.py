"""The base handler of every Hubforge REST view in a user's Jupyter server."""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

from .httperrors import ExpectedErrors
from .jsonbody import json_object


class HubforgeAPIHandler(ExpectedErrors, ExtensionHandlerMixin, APIHandler):
    """Authenticated (token or cookie + XSRF on writes), JSON errors without tracebacks."""

    auth_resource = "hubforge"

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object; 400 with a clear message otherwise."""
        return json_object(self.request.body)
