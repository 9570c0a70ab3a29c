"""The workbench's own user database: salted scrypt hashes in one 0600 JSON file."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path

from hubforge.accounts import state_file_mode
from hubforge.atomic import file_lock, read_json, write_json

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_N, _R, _P = 2**14, 8, 1
INITIAL_FILE = "initial-admin.txt"


class UserError(ValueError):
    """Bad user name, unknown user, or similar; the message says what to do."""


def check_username(name: str) -> str:
    if not USERNAME.match(name or ""):
        raise UserError(
            f"Invalid user name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _hash(password: str, salt: bytes) -> str:
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def _verify(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


_UNKNOWN_USER_HASH = _hash(secrets.token_urlsafe(16), secrets.token_bytes(16))


def generate_password() -> str:
    return secrets.token_urlsafe(12)


class PasswordStore:
    """Users with hashed passwords and an admin flag, stored in ``path`` (mode 0600)."""

    def __init__(self, path: str | Path, refuse_second: str | None = None):
        self.path = Path(path)
        self.refuse_second = refuse_second  # a one-person workbench: why a 2nd user is refused

    def _load(self) -> dict[str, dict]:
        return (read_json(self.path, {}) or {}).get("users", {})

    def _save(self, users: dict[str, dict]) -> None:
        # 0640 only where state/ is the hub's group's (per-user accounts), else 0600
        write_json(self.path, {"users": users}, mode=state_file_mode(self.path))

    def users(self) -> dict[str, dict]:
        """name -> {"admin": bool}, without hashes."""
        return {name: {"admin": u.get("admin", False)} for name, u in self._load().items()}

    def _locked(self):
        """Read-modify-write of the file by one process at a time (two `users add` at once
        must both land)."""
        return file_lock(self.path.with_name(self.path.name + ".lock"))

    def add(self, name: str, password: str | None = None, admin: bool = False) -> str:
        """Create a user; returns the password (generated unless given)."""
        check_username(name)
        password = password or generate_password()
        self._check_password(password)
        with self._locked():
            users = self._load()
            if name in users:
                raise UserError(f"User {name!r} exists already; use reset-password to change it")
            if users and self.refuse_second:
                raise UserError(self.refuse_second)
            users[name] = {"hash": _hash(password, secrets.token_bytes(16)), "admin": admin}
            self._save(users)
        return password

    def reset(self, name: str, password: str | None = None) -> str:
        password = password or generate_password()
        self._check_password(password)
        with self._locked():
            users = self._load()
            if name not in users:
                raise UserError(f"No such user {name!r}; add it with `hubforge users add {name}`")
            users[name]["hash"] = _hash(password, secrets.token_bytes(16))
            self._save(users)
            self._forget_initial_password(name)
        return password

    @property
    def initial_file(self) -> Path:
        """Where `hubforge up` saved the first admin's password (beside the store)."""
        return self.path.with_name(INITIAL_FILE)

    def _forget_initial_password(self, name: str) -> None:
        """A reset makes the saved first password wrong: remove the file, never leave a
        password lying around that someone may take for the current one."""
        try:
            text = self.initial_file.read_text()
        except OSError:
            return
        if f"user: {name}\n" in text:
            self.initial_file.unlink(missing_ok=True)

    def verify(self, name: str, password: str) -> dict | None:
        """The user's record (without hash) when the password matches, else None."""
        record = self._load().get(name)
        # unknown names cost the same scrypt work as known ones: timing tells nothing
        if not _verify(password, record["hash"] if record else _UNKNOWN_USER_HASH):
            return None
        if record is None:
            return None
        return {"name": name, "admin": record.get("admin", False)}

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < 8:
            raise UserError("Passwords need at least 8 characters")
