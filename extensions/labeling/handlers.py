"""Labeling views of the hubforge service: each hub user's Label Studio credentials.

GET  .../api/labeling/credentials[?owner=NAME]  -> {email, token, api_url, ui_url}
GET  .../api/labeling/login-link?next=PATH&bind=H -> {url} (H: sha256 of the browser's nonce)
GET  .../api/labeling/shares                     -> {shared_with, shared_with_me}
POST .../api/labeling/shares {"member": NAME}    -> share your projects with a teammate
DELETE .../api/labeling/shares/NAME              -> stop sharing
POST .../api/labeling/storages {"project", "folders"} -> let Label Studio serve those folders
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

from tornado import web

from ..service.handlers import ServiceHandler
from ..service.hub_api import hub_request
from .server import BIND_COOKIE, LabelingUnavailable, NotShared, prefix


class CredentialsHandler(ServiceHandler):
    async def engine(self, method: Any, *args: Any) -> Any:
        """Run an Accounts method off the event loop; its refusals become HTTP answers."""
        try:
            return await asyncio.to_thread(method, *args)
        except NotShared as e:
            raise web.HTTPError(403, str(e)) from None
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        except LabelingUnavailable as e:
            raise web.HTTPError(503, str(e)) from None

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
        creds = await self.engine(self.accounts.credentials, user, owner)
        self.write_json({**creds, "ui_url": prefix(self.settings["hub_prefix"]) + "/"})


class LoginLinkHandler(CredentialsHandler):
    """A one-minute link that opens Label Studio's UI as the caller (no password to type)."""

    async def get(self) -> None:
        user = self.labeling_user()
        next_path = self.get_argument("next", "/projects/")
        owner = self.get_argument("owner", None) or None
        bind = self.get_argument("bind", "")
        if not re.fullmatch(r"[0-9a-f]{64}", bind):
            raise web.HTTPError(
                400,
                "bind: the SHA-256 (64 hex digits) of the nonce the asking browser holds in "
                f"its {BIND_COOKIE} cookie; open Label Studio through "
                "/user/<you>/hubforge/labeling/open, which sets both",
            )
        hub_path = prefix(self.settings["hub_prefix"])
        url = await self.engine(self.accounts.login_link, user, hub_path, next_path, owner, bind)
        self.write_json({"url": url})


def _own_area(workbench: Any, owner: str) -> None:
    """With per-user accounts Label Studio reads a user's files through the privileged
    helper, as the account owning the area: the area must be that account's (as a spawn,
    a job or a deploy makes it) before its folders become a storage."""
    from ..owner_files import Areas

    areas = Areas(workbench.shared_data, workbench)
    if areas.separate:
        areas.prepare(owner)


class StoragesHandler(CredentialsHandler):
    """POST {"project", "folders": [...], "owner"?}: Label Studio may serve these folders to
    the project: the owner's folders inside their own area or datasets/; a teammate labeling a
    shared project, folders of datasets/ only (sharing a project lets a teammate label it,
    not read the rest of the owner's area)."""

    async def post(self) -> None:
        user = self.labeling_user()
        body = self.json_body()
        project, folders = body.get("project"), body.get("folders")
        owner = body.get("owner") or None
        if not isinstance(project, int) or isinstance(project, bool):
            raise web.HTTPError(400, '"project" must be a project id (a number)')
        if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
            raise web.HTTPError(400, '"folders" must be a list of folder paths')
        if owner is not None and not isinstance(owner, str):
            raise web.HTTPError(400, '"owner" must be a hub user name')
        wb = self.workbench
        roots = [wb.shared_data / "datasets"]
        if owner is None or owner == user:
            roots.insert(0, wb.user_area(user))
            await self.engine(_own_area, wb, user)
        added = await self.engine(self.accounts.add_storages, user, owner, project, folders, roots)
        self.write_json({"storages": added}, status=201)


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
        if member != user and not await self.hub_user_exists(member):
            raise web.HTTPError(404, f"No hub user {member!r}: check the name (hub admin page)")
        members = await self.engine(self.accounts.share, user, member)
        self.write_json({"shared_with": members}, status=201)

    async def delete(self, member: str | None = None) -> None:
        user = self.labeling_user()
        if not member:
            raise web.HTTPError(400, "Name the teammate: DELETE .../labeling/shares/<name>")
        members = await self.engine(self.accounts.unshare, user, member)
        self.write_json({"shared_with": members})

    async def hub_user_exists(self, name: str) -> bool:
        path = f"/users/{quote(name, safe='')}"
        auth = self.hub_auth
        return (await hub_request(auth.api_url, auth.api_token, "GET", path)).code == 200


def routes(api: str, args: dict[str, Any]) -> list[tuple]:
    return [
        (api + "/labeling/credentials", CredentialsHandler, args),
        (api + "/labeling/login-link", LoginLinkHandler, args),
        (api + "/labeling/storages", StoragesHandler, args),
        (api + "/labeling/shares", SharesHandler, args),
        (api + r"/labeling/shares/([^/]+)", SharesHandler, args),
    ]
