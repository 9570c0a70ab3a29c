"""Username/password login against the workbench's own password store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Unicode, default

from hubforge.atomic import DamagedStateFile

from .passwords import PasswordStore


class PasswordAuthenticator(Authenticator):
    """Each user logs in with their own password, set by `hubforge users add/reset-password`.

    To use OAuth or LDAP instead, set ``c.JupyterHub.authenticator_class`` in
    hubforge_config.py (see docs/configuration.md).
    """

    password_file = Unicode(
        config=True,
        help="JSON file with salted password hashes (default: <data dir>/state/passwords.json).",
    )

    @default("password_file")
    def _default_password_file(self) -> str:
        root = os.environ.get("HUBFORGE_DIR") or str(Path.home() / ".hubforge")
        return str(Path(root) / "state" / "passwords.json")

    @property
    def store(self) -> PasswordStore:
        return PasswordStore(self.password_file)

    async def authenticate(self, handler: Any, data: dict) -> dict | None:
        name = self.normalize_username(data.get("username", ""))
        try:
            record = self.store.verify(name, data.get("password", ""))
        except DamagedStateFile as e:
            self.log.error("Logins refused: %s", e)
            raise web.HTTPError(
                503,
                "Logins are paused: the workbench's password file is damaged. An admin "
                "must repair it (`hubforge users list` names the file).",
            ) from None
        if record is None:
            self.log.warning("Failed login for %r", name)
        return record

    def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        # Anyone with a password in the store may log in; users created by an admin
        # through the hub are allowed too, once they have a password.
        try:
            known = username in self.store.users()
        except DamagedStateFile as e:
            self.log.error("%s", e)
            known = False
        return known or super().check_allowed(username, authentication)
