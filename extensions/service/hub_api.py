"""The hubforge service's own calls to the hub's REST API (with its service token)."""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse


async def hub_request(api_url: str, token: str, method: str, path: str) -> HTTPResponse:
    """``method path`` on the hub's API (``path`` starts with '/'); errors are returned, not
    raised, so callers decide what a 404 means."""
    request = HTTPRequest(
        api_url.rstrip("/") + path,
        method=method,
        headers={
            "Authorization": f"token {token}",
            "Accept": "application/jupyterhub-pagination+json",
        },
        request_timeout=30,
    )
    return await AsyncHTTPClient().fetch(request, raise_error=False)
