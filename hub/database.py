"""The hub's database (``jupyterhub.sqlite``): checked at every start, backed up after every
good check and at a clean stop, restored from the newest good backup on request.

A damaged database used to make the hub print raw SQLAlchemy tracebacks and crash-loop under
`hubforge up`; moving it aside lost every user's tokens. Now the hub stops at once with
:data:`DAMAGED` (its exit status) and a message naming the file, and `hubforge up` offers
``hubforge restore-database``, which keeps users, servers and tokens as of the backup.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

from hubforge.sqlite_backup import backup, backups, check, restore, when

__all__ = ["DAMAGED", "at_exit", "at_start", "backup", "backups", "check", "restore", "when"]

DAMAGED = 78  # the hub's exit status for "my database is damaged" (EX_CONFIG)


def at_start(path: Path) -> None:
    """What the hub does before it opens its database: stop with DAMAGED and a message
    naming the file when it is damaged, else back it up."""
    problem = check(path)
    if problem is None:
        with contextlib.suppress(OSError, sqlite3.Error):  # a full disk: start anyway
            backup(path)
        return
    newest = next((b for b in backups(path) if check(b) is None), None)
    advice = (
        f"`hubforge restore-database` puts back its backup of {when(newest)} (users, servers "
        "and tokens as they were then)"
        if newest
        else "there is no backup of it: move it aside and start again (users and passwords "
        "are kept, API tokens are not)"
    )
    print(f"The hub's database {path} is damaged ({problem}): {advice}.", file=sys.stderr)
    sys.exit(DAMAGED)


def at_exit(path: Path) -> None:
    """The hub stops cleanly: back up its database if it is sound."""
    if check(path) is None:
        with contextlib.suppress(OSError, sqlite3.Error):
            backup(path)
