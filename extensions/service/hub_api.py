"""The hubforge service's own calls to the hub's REST API (with its service token)."""

from __future__ import annotations

import json

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


class HubUnavailable(RuntimeError):
    """The hub did not answer a listing with 200 (starting, restarting, refused)."""


async def all_users(api_url: str, token: str, query: str = "") -> list[dict]:
    """Every user model the hub lists (``query``: e.g. 'state=ready'), page by page: the hub
    answers at most 200 per request, 50 unless asked (a team page that read one page showed
    the first 50 users only). HubUnavailable when a page is not a 200."""
    users: list[dict] = []
    offset = 0
    while True:
        path = f"/users?{query + '&' if query else ''}offset={offset}&limit=200"
        response = await hub_request(api_url, token, "GET", path)
        if response.code != 200:
            raise HubUnavailable(f"hub API GET {path}: {response.code} {response.body!r}")
        page = json.loads(response.body)
        users += page["items"]
        following = page["_pagination"].get("next")
        if not following:
            return users
        offset = following["offset"]
