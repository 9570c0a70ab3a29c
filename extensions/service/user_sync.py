"""Every password user is a hub user: the hub's Admin page lists users made with
`hubforge users add` (or the service's API) before their first login, admins as admins.

The password file is the service's; whenever it changes (checked every few seconds, so a
`hubforge users add` made while the workbench runs, or while it was stopped, counts too),
users the hub does not know yet are created through the hub's REST API (the service's role
has ``admin:users``). Nothing is removed or changed on the hub: only users are added.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..hub.passwords import PasswordStore

INTERVAL = 3.0  # seconds between checks of the password file


class UserSync:
    def __init__(self, passwords_file: Path, api_url: str, token: str, log: logging.Logger):
        self.passwords_file = passwords_file
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.log = log
        self.seen: int | None = None  # the password file's mtime last brought in step
        self._running: asyncio.Task | None = None

    def tick(self) -> None:
        """PeriodicCallback target: one sync at a time, never on the loop's critical path."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self.sync())

    async def sync(self) -> bool:
        """Create the hub users the password file has and the hub lacks; False when the hub
        did not answer (tried again at the next tick)."""
        try:
            changed = os.stat(self.passwords_file).st_mtime_ns
        except OSError:
            return True  # no password users (Kubernetes, or none made yet)
        if changed == self.seen:
            return True
        users = await asyncio.to_thread(PasswordStore(self.passwords_file).users)
        if users and not await self._create(sorted(users)):
            return False
        self.seen = changed
        return True

    async def _create(self, names: list[str]) -> bool:
        """POST /users: 201 made (some of) them, 409 all of them exist already. As plain
        users: only an admin may make admins (the hub's rule), and the password file's admins
        become admins as they log in (hubforge.hub.auth). False: try again later."""
        request = HTTPRequest(
            self.api_url + "/users",
            method="POST",
            headers={"Authorization": f"token {self.token}"},
            body=json.dumps({"usernames": names}),
            request_timeout=30,
        )
        try:
            r = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError:
            return False  # the hub is not answering (starting, restarting)
        if r.code == 201:
            made = [u["name"] for u in json.loads(r.body)]
            self.log.info("Added to the hub (made with a password): %s", ", ".join(made))
        elif r.code != 409:
            self.log.warning("Could not add password users to the hub: %s %s", r.code, r.body[:200])
            return r.code < 500  # refused: said once; the hub away: again at the next tick
        return True
