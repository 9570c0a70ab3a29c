"""The workbench's first admin: made when there is no user yet, its password shown once."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_text
from ..workbench import Workbench
from .common import FIRST_ADMIN, _store


def _ensure_first_admin(workbench: Workbench) -> str | None:
    """Create the first admin when there is no user yet; returns its password (shown once,
    at the end of start-up, where it does not scroll away)."""
    store = _store(workbench)
    if store.users():
        return None
    password = store.add(FIRST_ADMIN, admin=True)
    creds = workbench.initial_admin_file
    write_text(creds, f"user: {FIRST_ADMIN}\npassword: {password}\n", mode=0o600)
    return password


def first_admin_box(password: str, creds: Path) -> str:
    """The first admin's credentials in a box, with what to do next."""
    lines = [
        "Created the first admin (shown once):",
        f"  user:     {FIRST_ADMIN}",
        f"  password: {password}",
        f"Change it: hubforge users reset-password {FIRST_ADMIN}",
        f"(kept, readable only by you, in {creds} until you do)",
    ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def _first_admin_hint(workbench: Workbench) -> str:
    creds = workbench.initial_admin_file
    return f" (first admin: see {creds})" if creds.exists() else ""
