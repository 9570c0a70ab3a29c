"""The hub's Change password page (``<hub>/change-password``): a signed-in user sets a new
password after giving the current one. The hub may not write the password store (the
hubforge service's file): the page calls the service's password API with a one-minute token
of the user's own, which the service checks like any other call of theirs."""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

SCOPE = "access:services!service=hubforge"


class ChangePasswordHandler(BaseHandler):
    """GET: the form; POST: current, new and again -> a message on the same page."""

    @web.authenticated
    async def get(self) -> None:
        self.finish(await self._page())

    @web.authenticated
    async def post(self) -> None:
        current = self.get_body_argument("current", "")
        new = self.get_body_argument("new", "")
        again = self.get_body_argument("again", "")
        if new != again:
            self.set_status(400)
            self.finish(await self._page(error="The two new passwords differ; nothing changed"))
            return
        status, message = await self._ask_service(current, new)
        self.set_status(status)
        if status == 200:
            self.finish(await self._page(done="Your password is changed: use it next time"))
        else:
            self.finish(await self._page(error=message))

    async def _ask_service(self, current: str, new: str) -> tuple[int, str]:
        """The service's answer to this user's change (status, its message)."""
        user = self.current_user
        url = self.authenticator.service_url
        if not url:
            return 503, "Passwords are not kept by Hubforge here (another authenticator)"
        token = user.new_api_token(note="change password", expires_in=60, scopes=[SCOPE])
        try:
            response = await AsyncHTTPClient().fetch(
                HTTPRequest(
                    f"{url}/users/{user.name}/password",
                    method="PUT",
                    headers={"Authorization": f"token {token}"},
                    body=json.dumps({"current": current, "new": new}),
                    request_timeout=60,
                ),
                raise_error=False,
            )
        finally:
            for orm_token in list(user.api_tokens):
                if orm_token.note == "change password":
                    self.db.delete(orm_token)
            self.db.commit()
        if response.code == 599:
            return 503, "The hubforge service did not answer; try again in a minute"
        try:
            message = json.loads(response.body or b"{}").get("message", "")
        except ValueError:
            message = ""
        return response.code, message or response.reason or ""

    async def _page(self, **ns: Any) -> str:
        return await self.render_template("change-password.html", **ns)
