"""Labeling views of the hubforge service: each hub user's Label Studio credentials.

GET /services/hubforge/api/labeling/credentials   -> {email, token, api_url, ui_url}
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from ..service.handlers import ServiceHandler
from .server import LabelingUnavailable, prefix


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
        try:
            creds = await asyncio.to_thread(self.accounts.credentials, user)
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        self.write_json({**creds, "ui_url": prefix(self.settings["hub_prefix"]) + "/"})


class LoginLinkHandler(CredentialsHandler):
    """A one-minute link that opens Label Studio's UI as the caller (no password to type)."""

    async def get(self) -> None:
        user = self.labeling_user()
        next_path = self.get_argument("next", "/projects/")
        try:
            url = await asyncio.to_thread(
                self.accounts.login_link,
                user,
                prefix(self.settings["hub_prefix"]),
                next_path,
            )
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        self.write_json({"url": url})


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/labeling/credentials", CredentialsHandler, args),
        (api + "/labeling/login-link", LoginLinkHandler, args),
    ]
