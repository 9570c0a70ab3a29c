"""The hub's database (``jupyterhub.sqlite``): checked at every start, backed up after every
good check, restored from the newest good backup on request.

A damaged database used to make the hub print raw SQLAlchemy tracebacks and crash-loop under
`hubforge up`; moving it aside lost every user's tokens. Now the hub stops at once with
:data:`DAMAGED` (its exit status) and a message naming the file, and `hubforge up` offers
``hubforge restore-database``, which keeps users, servers and tokens as of the backup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from pathlib import Path

DAMAGED = 78  # the hub's exit status for "my database is damaged" (EX_CONFIG)
KEEP = 3
BACKUPS = "backups"


def check(path: Path) -> str | None:
    """None when ``path`` is a sound SQLite database (or does not exist yet), else what
    SQLite says is wrong with it."""
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as e:
        return str(e)
    problems = [str(row[0]) for row in rows if row and row[0] != "ok"]
    return "; ".join(problems[:3]) if problems else None


def backups(path: Path) -> list[Path]:
    """The backups of ``path``, newest first."""
    folder = path.parent / BACKUPS
    found = sorted(folder.glob(f"{path.stem}-*.sqlite"), reverse=True) if folder.is_dir() else []
    return [p for p in found if not p.is_symlink()]


def backup(path: Path, keep: int = KEEP) -> Path | None:
    """Copy a sound ``path`` into backups/<name>-<UTC time>.sqlite (SQLite's online backup:
    consistent even while it is used); only the newest ``keep`` stay."""
    if not path.exists():
        return None
    folder = path.parent / BACKUPS
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = folder / f"{path.stem}-{stamp}.sqlite"
    partial = target.with_suffix(".partial")
    with (
        contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(partial)) as copy,
    ):
        source.backup(copy)
    os.chmod(partial, 0o600)
    os.replace(partial, target)
    for old in backups(path)[keep:]:
        old.unlink(missing_ok=True)
    return target


def when(backup_file: Path) -> str:
    """'2026-12-04 21:30:05 UTC' from a backup's name."""
    stamp = backup_file.stem.rsplit("-", 2)
    try:
        moment = time.strptime("-".join(stamp[-2:]), "%Y%m%d-%H%M%S")
    except ValueError:
        return backup_file.name
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", moment)


def restore(path: Path) -> tuple[Path, Path]:
    """Put the newest sound backup in place of ``path``; the damaged file is kept aside as
    ``<name>.damaged-<time>``. Returns (the backup used, where the damaged file went)."""
    for candidate in backups(path):
        if check(candidate) is None:
            break
    else:
        raise FileNotFoundError(
            f"no sound backup of {path} in {path.parent / BACKUPS}: move the damaged file "
            "aside and start again (users and their passwords are kept; tokens are not)"
        )
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    if path.exists():
        os.replace(path, aside)
    for extra in ("-journal", "-wal", "-shm"):  # belonged to the damaged file
        Path(f"{path}{extra}").unlink(missing_ok=True)
    partial = path.with_suffix(".restoring")
    with (
        contextlib.closing(sqlite3.connect(f"file:{candidate}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(partial)) as copy,
    ):
        source.backup(copy)
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return candidate, aside


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


def main(argv: list[str] | None = None) -> int:
    """``python -m hubforge.hub.database restore PATH``: the restore, run as the account
    that owns the database (the hub's, with per-user accounts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "restore":
        print("usage: python -m hubforge.hub.database restore PATH", file=sys.stderr)
        return 2
    try:
        used, aside = restore(Path(args[1]))
    except (OSError, sqlite3.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Restored the hub's database from its backup of {when(used)}; the damaged one: {aside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
