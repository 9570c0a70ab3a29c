"""The proxy's error pages (hubforge.service.proxy_errors): JSON that says to retry for calls
to the service's own paths, the hub's page (or a short one while the hub is away) for others."""

from __future__ import annotations

import json
import os

from tornado import web
from tornado.testing import AsyncHTTPTestCase

from hubforge.processes import free_port
from hubforge.service.proxy_errors import ProxyErrorHandler


class ProxyErrorPages(AsyncHTTPTestCase):
    def get_app(self) -> web.Application:
        return web.Application(
            [(r"/services/hubforge/proxy-error/(\d+)", ProxyErrorHandler)],
            service_prefix="/services/hubforge/",
        )

    def test_an_endpoint_call_gets_json_that_says_to_retry(self) -> None:
        url = "/services/hubforge/proxy-error/404?url=/services/hubforge/endpoints/a/b/v1/models/b"
        r = self.fetch(url)
        assert r.headers["Content-Type"].startswith("application/json")
        assert "proxy is starting again (404)" in json.loads(r.body)["error"]

    def test_other_paths_while_the_hub_is_away_get_a_short_page(self) -> None:
        old = os.environ.get("JUPYTERHUB_API_URL")
        os.environ["JUPYTERHUB_API_URL"] = f"http://127.0.0.1:{free_port()}/hub/api"
        try:
            r = self.fetch("/services/hubforge/proxy-error/503?url=/hub/home")
        finally:
            if old is None:
                del os.environ["JUPYTERHUB_API_URL"]
            else:
                os.environ["JUPYTERHUB_API_URL"] = old
        assert r.headers["Content-Type"].startswith("text/html")
        assert b"The hub is starting again" in r.body and b"<h1>503</h1>" in r.body
