"""The proxy's error pages (``--error-target``; `hubforge up` starts the proxy with it).

configurable-http-proxy asks ``<target>/<code>?url=<path>`` when it has no route for a request
(404: it has just been started again and its routes are being put back) or the route's target
does not answer (503), and sends the answer's body with that status. A call to an endpoint
then reads JSON in TF Serving's error shape that says to retry, never an HTML page a TF Serving
client reads as "model not found"; every other path gets the hub's own error page, or a short
page saying the hub is starting again while it does not answer.
"""

from __future__ import annotations

import html
import os
from urllib.parse import urlencode

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

HUB_AWAY = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Hubforge: one moment</title>"
    "</head><body><h1>{code}</h1><p>The hub is starting again: reload this page in a few "
    "seconds. Running servers, training jobs and endpoints are not affected.</p></body></html>"
)


def hub_error_url(code: str) -> str:
    """The hub's own error page (``<hub>/error/<code>``), from the service's API URL."""
    api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
    return api.removesuffix("/api") + f"/error/{code}"


class ProxyErrorHandler(web.RequestHandler):
    """GET <prefix>proxy-error/<code>?url=<path>: no token (the proxy calls it on loopback);
    it says nothing that is not on the public error pages already."""

    async def get(self, code: str) -> None:
        url = self.get_argument("url", "")
        if url.startswith(self.settings["service_prefix"]):
            self.set_header("Content-Type", "application/json")
            self.finish(
                {
                    "error": f"The workbench's proxy is starting again ({code}): retry in a "
                    "few seconds"
                }
            )
            return
        try:
            page = await AsyncHTTPClient().fetch(
                hub_error_url(code) + "?" + urlencode({"url": url}), request_timeout=5
            )
            body, kind = page.body, page.headers.get("Content-Type", "text/html")
        except HTTPClientError as e:  # the hub's page answers with the error's own status
            if e.response is None:
                body, kind = HUB_AWAY.format(code=html.escape(code)).encode(), "text/html"
            else:
                body, kind = e.response.body, e.response.headers.get("Content-Type", "text/html")
        except OSError:  # the hub does not answer
            body, kind = HUB_AWAY.format(code=html.escape(code)).encode(), "text/html"
        self.set_header("Content-Type", kind)
        self.finish(body)
