"""Labeling views of the hubforge service: each hub user's Label Studio credentials.

GET  .../api/labeling/credentials[?owner=NAME]  -> {email, token, api_url, ui_url}
GET  .../api/labeling/login-link?next=PATH       -> {url}
GET  .../api/labeling/shares                     -> {shared_with, shared_with_me}
POST .../api/labeling/shares {"member": NAME}    -> share your projects with a teammate
DELETE .../api/labeling/shares/NAME              -> stop sharing
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from ..service.handlers import ServiceHandler
from .server import LabelingUnavailable, NotShared, prefix


class CredentialsHandler(ServiceHandler):
    def labeling_user(self) -> str:
        """The calling user's name, once labeling is possible for them."""
        ident = self.identity
        if ident["kind"] != "user":
            raise web.HTTPError(403, "Labeling accounts belong to users: use a user's token")
        if self.accounts is None:
            raise web.HTTPError(
                503, "Label Studio is not installed here: run `make setup`, then restart"
            )
        return ident["name"]

    async def get(self) -> None:
        user = self.labeling_user()
        owner = self.get_argument("owner", None) or None
        try:
            creds = await asyncio.to_thread(self.accounts.credentials, user, owner)
        except NotShared as e:
            raise web.HTTPError(403, str(e)) from None
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        self.write_json({**creds, "ui_url": prefix(self.settings["hub_prefix"]) + "/"})


class LoginLinkHandler(CredentialsHandler):
    """A one-minute link that opens Label Studio's UI as the caller (no password to type)."""

    async def get(self) -> None:
        user = self.labeling_user()
        next_path = self.get_argument("next", "/projects/")
        owner = self.get_argument("owner", None) or None
        try:
            url = await asyncio.to_thread(
                self.accounts.login_link,
                user,
                prefix(self.settings["hub_prefix"]),
                next_path,
                owner,
            )
        except NotShared as e:
            raise web.HTTPError(403, str(e)) from None
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        self.write_json({"url": url})


class SharesHandler(CredentialsHandler):
    """Owners share all their labeling projects with named teammates (hub users)."""

    def get(self, member: str | None = None) -> None:
        user = self.labeling_user()
        by_owner = self.accounts.shares()["by_owner"]
        self.write_json(
            {
                "shared_with": by_owner.get(user, []),
                "shared_with_me": sorted(o for o, ms in by_owner.items() if user in ms),
            }
        )

    async def post(self, member: str | None = None) -> None:
        user = self.labeling_user()
        member = self.json_body().get("member")
        if not isinstance(member, str) or not member:
            raise web.HTTPError(400, 'Send {"member": "<hub user name>"}')
        if member == user:
            raise web.HTTPError(400, "You always see your own projects: name a teammate")
        if not await self.hub_user_exists(member):
            raise web.HTTPError(404, f"No hub user {member!r}: check the name (hub admin page)")
        members = await asyncio.to_thread(self.accounts.share, user, member)
        self.write_json({"shared_with": members}, status=201)

    async def delete(self, member: str | None = None) -> None:
        user = self.labeling_user()
        if not member:
            raise web.HTTPError(400, "Name the teammate: DELETE .../labeling/shares/<name>")
        try:
            members = await asyncio.to_thread(self.accounts.unshare, user, member)
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        self.write_json({"shared_with": members})

    async def hub_user_exists(self, name: str) -> bool:
        from urllib.parse import quote

        from tornado.httpclient import AsyncHTTPClient

        response = await AsyncHTTPClient().fetch(
            f"{self.hub_auth.api_url}/users/{quote(name, safe='')}",
            headers={"Authorization": f"token {self.hub_auth.api_token}"},
            raise_error=False,
        )
        return response.code == 200


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/labeling/credentials", CredentialsHandler, args),
        (api + "/labeling/login-link", LoginLinkHandler, args),
        (api + "/labeling/shares", SharesHandler, args),
        (api + r"/labeling/shares/([^/]+)", SharesHandler, args),
    ]
