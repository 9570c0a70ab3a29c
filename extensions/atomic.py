"""Atomic state files: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_text(path: str | os.PathLike, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` so readers see either the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any, mode: int = 0o600) -> None:
    """Atomically write ``data`` as indented JSON."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


class DamagedStateFile(ValueError):
    """A state file that is not the JSON Hubforge wrote (truncated, overwritten by hand)."""

    http_status = 503

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(
            f"{self.path} is damaged ({problem}). Nothing was changed: it is left as it is. "
            f"Restore it from a backup, or move it aside (mv {self.path} {self.path}.damaged) "
            "to start that record afresh"
        )

    def __reduce__(self) -> tuple:  # raised again where a child process found it
        return (type(self), (self.path, self.problem))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON state file; ``default`` when it does not exist yet, DamagedStateFile
    (naming the file and what to do) when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise DamagedStateFile(path, str(e) or type(e).__name__) from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, timeout: float | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created 0600) across processes and threads.

    Yields True once held; with ``timeout`` (seconds), yields False if another holder kept it
    that long. The lock goes with the process, so a killed holder never leaves it taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                held = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    held = False
                    break
                time.sleep(0.02)
        yield held
    finally:
        os.close(fd)
