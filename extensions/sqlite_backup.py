"""SQLite databases kept safe: an integrity check, online backups (the newest few, named by
their UTC time) and a restore from the newest sound one, the damaged file kept aside.

Standard library only: Label Studio's launcher (``labeling/ls_main.py``, in Label Studio's own
environment) loads this file by its path, beside the hub's own use (``hubforge.hub.database``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from pathlib import Path

KEEP = 3
BACKUPS = "backups"


def check(path: Path) -> str | None:
    """None when ``path`` is a sound SQLite database (or does not exist yet), else what
    SQLite says is wrong with it."""
    if not path.exists():
        return None
    _recover(path)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as e:
        return str(e)
    problems = [str(row[0]) for row in rows if row and row[0] != "ok"]
    return "; ".join(problems[:3]) if problems else None


def _recover(path: Path) -> None:
    """A writer killed in a transaction (kill -9, a crash) leaves a hot journal that only a
    connection allowed to write can roll back: a read-only one answers "attempt to write a
    readonly database", which is no damage. Do what the next writer would do first."""
    if not any(Path(f"{path}{suffix}").exists() for suffix in ("-journal", "-wal")):
        return
    with (
        contextlib.suppress(sqlite3.DatabaseError, OSError),
        contextlib.closing(sqlite3.connect(path, timeout=30)) as db,
    ):
        db.execute("PRAGMA schema_version").fetchall()  # reading rolls the journal back


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
    _copy(path, target)
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
            "aside and start again (a new, empty database is made)"
        )
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    if path.exists():
        os.replace(path, aside)
    for extra in ("-journal", "-wal", "-shm"):  # belonged to the damaged file
        Path(f"{path}{extra}").unlink(missing_ok=True)
    _copy(candidate, path)
    return candidate, aside


def _copy(source_path: Path, target: Path) -> None:
    """SQLite's online backup of ``source_path`` into ``target`` (0600), which appears
    whole or not at all."""
    partial = target.with_name(target.name + ".partial")
    with (
        contextlib.closing(sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(partial)) as copy,
    ):
        source.backup(copy)
    os.chmod(partial, 0o600)
    os.replace(partial, target)


def main(argv: list[str] | None = None) -> int:
    """``python -m hubforge.sqlite_backup restore PATH``: the restore, run as the account
    that owns the database (the hub's or Label Studio's, with per-user accounts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "restore":
        print("usage: python -m hubforge.sqlite_backup restore PATH", file=sys.stderr)
        return 2
    try:
        used, aside = restore(Path(args[1]))
    except (OSError, sqlite3.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Restored {args[1]} from its backup of {when(used)}; the damaged file is now {aside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
