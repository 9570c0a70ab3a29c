"""Labeling views of the hubforge service: each hub user's Label Studio credentials.

GET /services/hubforge/api/labeling/credentials   -> {email, token, api_url, ui_url}
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import web

from ..service.handlers import ServiceHandler
from .server import LabelingUnavailable


class CredentialsHandler(ServiceHandler):
    def initialize(self, accounts: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.accounts = accounts

    async def get(self) -> None:
        ident = self.identity
        if ident["kind"] != "user":
            raise web.HTTPError(403, "Labeling accounts belong to users: use a user's token")
        if self.accounts is None:
            raise web.HTTPError(
                503, "Label Studio is not installed here: run `make setup`, then restart"
            )
        try:
            creds = await asyncio.to_thread(self.accounts.credentials, ident["name"])
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        ui = f"{self.settings['hub_prefix']}services/label-studio/"
        self.write_json({**creds, "ui_url": ui})


class LoginLinkHandler(CredentialsHandler):
    """A one-minute link that opens Label Studio's UI as the caller (no password to type)."""

    async def get(self) -> None:
        ident = self.identity
        if ident["kind"] != "user" or self.accounts is None:
            raise web.HTTPError(403 if self.accounts else 503, "Labeling is for users here")
        prefix = f"{self.settings['hub_prefix']}services/label-studio"
        next_path = self.get_argument("next", "/projects/")
        try:
            url = await asyncio.to_thread(
                self.accounts.login_link, ident["name"], prefix, next_path
            )
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        self.write_json({"url": url})


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/labeling/credentials", CredentialsHandler, args),
        (api + "/labeling/login-link", LoginLinkHandler, args),
    ]
