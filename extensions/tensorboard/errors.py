"""Errors of the TensorBoard engine; every message says what to do."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

# errno -> the HTTP status a REST view answers with (others: 500)
_STATUS = {errno.EACCES: 403, errno.EPERM: 403, errno.EROFS: 403, errno.ENOSPC: 507}


class TensorBoardError(ValueError):
    """Bad log dir, too many instances, or an instance that would not start."""

    status = 400  # what a REST view answers with


class StateNotWritable(TensorBoardError):
    """TensorBoard's records or logs cannot be written (an unwritable home, a full disk); the
    message names the path and what to fix."""

    def __init__(self, path: str | os.PathLike, error: OSError):
        where = Path(error.filename or path)
        why = error.strerror or str(error)
        if error.errno == errno.ENOSPC:
            fix = "the disk is full: free some space (or ask an admin to)"
        elif error.errno == errno.EROFS:
            fix = f"{where} is on a read-only file system: ask an admin to mount it writable"
        else:
            fix = (
                f"make {where.parent} writable for you (`chmod u+w {where.parent}`; if it is "
                "not yours, ask an admin to give it back to you), or set HOME to a folder you "
                "can write"
            )
        super().__init__(
            f"TensorBoard cannot write {where} ({why}), where it records your TensorBoards "
            f"and their logs. Nothing was started; {fix}, then open again"
        )
        self.errno = error.errno
        self.status = _STATUS.get(error.errno or 0, 500)


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """An OSError of writing ``path`` (or a folder on its way) as StateNotWritable."""
    try:
        yield
    except OSError as e:
        raise StateNotWritable(path, e) from None
