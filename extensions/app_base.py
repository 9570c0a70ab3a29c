"""The base handler of every Hubforge REST view in a user's Jupyter server."""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web


class HubforgeAPIHandler(ExtensionHandlerMixin, APIHandler):
    """Authenticated (token or cookie + XSRF on writes), JSON errors without tracebacks."""

    auth_resource = "hubforge"

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object; 400 with a clear message otherwise."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The request body must be a JSON object")
        return body
