"""Copying a user's folder on their behalf without leaving it.

The hubforge service copies what users point it at (a model to deploy): a symlink inside that
folder must not make it read what the user cannot (the service's environment, the state
folder, another user's area). Links that stay inside the folder are followed; links out of it,
devices, sockets and pipes are refused, and files are opened with O_NOFOLLOW so a link swapped
in after the check is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeEntry(ValueError):
    """An entry of the folder the copy will not follow; the message names it."""


def _copy_file(source: Path, target: Path) -> None:
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeEntry(f"{source} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as src, open(target, "xb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    except OSError as e:
        if e.errno == 40:  # ELOOP: it became a symlink after the check
            raise UnsafeEntry(f"{source} changed into a link while it was copied") from None
        raise
    finally:
        os.close(fd)


def copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` (a folder) to ``target`` (which must not exist) without following
    links out of ``source``; UnsafeEntry names the first entry it refuses."""
    root = source.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        (target / here.relative_to(root)).mkdir(parents=True, exist_ok=here != root)
        for name in [*dirnames, *filenames]:
            path = here / name
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                continue  # os.walk descends into it
            if stat.S_ISLNK(mode):
                real = path.resolve()
                if real != root and root not in real.parents:
                    raise UnsafeEntry(
                        f"{path} links outside the folder (to {real}): copy the file itself "
                        "into the folder instead"
                    )
                if not real.is_file():
                    raise UnsafeEntry(f"{path} links to a folder: copy the folder itself")
                _copy_file(real, target / path.relative_to(root))
            elif stat.S_ISREG(mode):
                _copy_file(path, target / path.relative_to(root))
            else:
                raise UnsafeEntry(f"{path} is not a regular file (a device, socket or pipe)")
