"""Username/password login against the workbench's own password store."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Float, Integer, Unicode, default

from hubforge.atomic import DamagedStateFile

from .login_limits import FailedLogins, TooManyFailures
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

    failures_per_name = Integer(
        10,
        config=True,
        help="Failed logins for one user name within failure_window before tries are refused "
        "(0: no limit).",
    )
    failures_per_address = Integer(
        30,
        config=True,
        help="Failed logins from one client address within failure_window before its tries "
        "are refused (0: no limit).",
    )
    failure_window = Integer(
        300, config=True, help="Seconds a failed login counts towards the limits."
    )
    failure_delay = Float(
        1.0,
        config=True,
        help="Past failures_per_name, each try for that name waits this long (doubling with "
        "each further failure, up to failure_delay_max) before its password is checked.",
    )
    failure_delay_max = Float(16.0, config=True, help="The longest wait of one try (seconds).")
    service_url = Unicode(
        "",
        config=True,
        help="The hubforge service's API, where users change their own password (the hub's "
        "Change password page); set by the local workbench's configuration.",
    )

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        from .password_page import ChangePasswordHandler

        return [*super().get_handlers(app), ("/change-password", ChangePasswordHandler)]

    _name_locks: dict = {}

    _failed: FailedLogins | None = None

    @property
    def failed_logins(self) -> FailedLogins:
        if self._failed is None:
            self._failed = FailedLogins(
                self.failures_per_name, self.failures_per_address, self.failure_window
            )
        return self._failed

    @property
    def store(self) -> PasswordStore:
        return PasswordStore(self.password_file)

    async def authenticate(self, handler: Any, data: dict) -> dict | None:
        name = self.normalize_username(data.get("username", ""))
        address = handler.request.remote_ip if handler is not None else ""
        try:
            self.failed_logins.check_address(address)
        except TooManyFailures as e:
            self.log.warning("Login of %r from %s refused: %s", name, address, e)
            raise web.HTTPError(
                429,
                "%s",  # the name may hold '%': never format it as a template
                f"{e}. If you forgot your password, an admin can set a new one "
                "(`hubforge users reset-password <name>`).",
            ) from None
        delay = self.failed_logins.delay(name, base=self.failure_delay, most=self.failure_delay_max)
        if delay:  # past the name's limit: one try at a time, each after a wait
            lock = self._name_locks.setdefault(name, asyncio.Lock())
            try:
                async with lock:
                    await asyncio.sleep(delay)
                    record = self._verify(name, data.get("password", ""), address)
            finally:
                if not lock.locked():
                    self._name_locks.pop(name, None)
            if record is None:
                raise web.HTTPError(
                    429,
                    "%s",
                    f"Too many failed logins for the user name {name}: each try now waits "
                    f"{delay:.0f} s. The right password still signs in; if you forgot it, an "
                    "admin can set a new one (`hubforge users reset-password <name>`).",
                )
            return record
        return self._verify(name, data.get("password", ""), address)

    def _verify(self, name: str, password: str, address: str) -> dict | None:
        try:
            record = self.store.verify(name, password)
        except DamagedStateFile as e:
            self.log.error("Logins refused: %s", e)
            raise web.HTTPError(
                503,
                "Logins are paused: the workbench's password file is damaged. An admin "
                "must repair it (`hubforge users list` names the file).",
            ) from None
        if record is None:
            self.log.warning("Failed login for %r from %s", name, address)
            self.failed_logins.failed(name, address)
        else:
            self.failed_logins.succeeded(name)
        return record

    def add_user(self, user: Any) -> Any:
        """Users added through the hub (admin panel, REST API): refused on a one-person
        workbench (see Workbench.trusted_team), like `hubforge users add`."""
        from hubforge.workbench import load_workbench

        reason = load_workbench().sharing_refusal()
        if reason:
            known = self.store.users()
            if known and user.name not in known:
                raise ValueError(reason)
        return super().add_user(user)

    def check_allow_config(self) -> None:
        """No "nobody can login" warning: the password store is the allow list (a user with
        a password may log in; `hubforge users add` gives one)."""

    def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        # Anyone with a password in the store may log in; users created by an admin
        # through the hub are allowed too, once they have a password.
        try:
            known = username in self.store.users()
        except DamagedStateFile as e:
            self.log.error("%s", e)
            known = False
        return known or super().check_allowed(username, authentication)
