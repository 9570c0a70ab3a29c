"""Copying a user's folder on their behalf without leaving it.

The hubforge service copies what users point it at (a model to deploy): a symlink inside that
folder must not make it read what the user cannot (the service's environment, the state
folder, another user's area). Links that stay inside the folder are followed; links out of it,
devices, sockets and pipes are refused, and files are opened with O_NOFOLLOW so a link swapped
in after the check is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import subprocess
import sys
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


# -- files of a user's area, opened by a process with more rights than the user ---------------
# The service (root with per-user accounts) reads and writes job records and logs inside
# users/<owner>/, a folder the owner controls: any part of the path may have been swapped for a
# link to the state folder or to another user's area. Each part is opened with O_NOFOLLOW
# relative to the one above it, so nothing outside ``root`` is ever reached.

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# no link, and a pipe or device in the way answers at once instead of blocking the caller
_NEVER_WAIT = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _parts(relative: str | os.PathLike) -> list[str]:
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(p in ("..", ".") for p in parts):
        raise UnsafeEntry(f"{relative}: a path inside the folder is needed")
    return list(parts)


def _folder_beneath(root: Path, parts: list[str]) -> int:
    """An fd of root/parts..., every part a real folder (no link)."""
    fd = os.open(os.path.realpath(root), _DIR)  # root itself is the caller's to trust
    try:
        for part in parts:
            try:
                inner = os.open(part, _DIR, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeEntry(
                        f"{root / Path(*parts)}: '{part}' is a link or not a folder; the "
                        "workbench never follows links in your area (remove the link)"
                    ) from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_beneath(
    root: Path, relative: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o644
) -> int:
    """An fd of the regular file root/relative, reached without following any link;
    UnsafeEntry when a part is a link or the file is not a regular file."""
    *folders, name = _parts(relative)
    parent = _folder_beneath(root, folders)
    try:
        try:
            fd = os.open(name, flags | _NEVER_WAIT, mode, dir_fd=parent)
        except OSError as e:
            if e.errno == errno.ENXIO:  # a pipe nobody reads
                raise UnsafeEntry(f"{root / relative} is not a regular file") from None
            if e.errno == errno.ELOOP:
                raise UnsafeEntry(
                    f"{root / relative} is a link; the workbench never follows links in your "
                    "area (remove the link)"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeEntry(f"{root / relative} is not a regular file")
        return fd
    finally:
        os.close(parent)


def list_beneath(root: Path, relative: str | os.PathLike) -> list[str]:
    """The names in the folder root/relative (empty when it does not exist)."""
    try:
        fd = _folder_beneath(root, _parts(relative))
    except FileNotFoundError:
        return []
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def read_beneath(root: Path, relative: str | os.PathLike, offset: int = 0) -> bytes | None:
    """The bytes of root/relative from ``offset`` (None when it does not exist)."""
    try:
        fd = open_beneath(root, relative)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        return f.read()


def write_beneath(root: Path, relative: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replace root/relative with ``data`` atomically (a new file renamed over it), without
    following a link on the way or at the temporary name."""
    *folders, name = _parts(relative)
    parent = _folder_beneath(root, folders)
    try:
        tmp = f".{name}.{secrets.token_hex(6)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, mode, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode, dir_fd=parent, follow_symlinks=False)
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
    finally:
        os.close(parent)


def open_log(path: Path, owner: tuple[int, int] | None = None) -> int:
    """An fd appending to the log file ``path`` (created if missing, given to ``owner``
    (uid, gid) then); UnsafeEntry when ``path`` is a link or not a regular file, so a
    process writing as root never appends to where a user's link points."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NEVER_WAIT
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a pipe nobody reads
            raise UnsafeEntry(f"{path} is not a regular file") from None
        if e.errno == errno.ELOOP:
            raise UnsafeEntry(
                f"{path} is a link; the workbench writes its log there and never follows "
                "links (remove the link)"
            ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeEntry(f"{path} is not a regular file")
    os.set_blocking(fd, True)  # a regular file: children inherit an ordinary descriptor
    if owner is not None and (info.st_uid, info.st_gid) != owner:
        os.fchown(fd, *owner)
    return fd


def copy_as(popen: dict, source: Path, target: Path) -> None:
    """copy_tree run by another account (``popen``: its Popen user/group), so the copy reads
    only what that account may read and writes only where it may write: it copies to a
    hidden folder beside ``target``, then renames it to ``target``."""
    _as(popen, "copy", source, target)


def remove_as(popen: dict, path: Path) -> None:
    """Remove the folder ``path`` as another account (what a failed copy left)."""
    _as(popen, "remove", path)


def _as(popen: dict, *args: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hubforge.confined", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd="/",
        **popen,
    )
    error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    if done.returncode == 3:
        raise UnsafeEntry(error)
    if done.returncode:
        if "No space left" in error:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[-1]))
        raise OSError(errno.EACCES, f"{args[0]} {args[1]} as its owner failed: {error}")


def _main(argv: list[str]) -> int:
    command, *paths = argv
    try:
        if command == "remove":
            shutil.rmtree(paths[0], ignore_errors=True)
            return 0
        source, target = (Path(a) for a in paths)
        incoming = target.parent / f".incoming-{target.name}"
        shutil.rmtree(incoming, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            copy_tree(source, incoming)
            incoming.rename(target)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
    except UnsafeEntry as e:
        print(e, file=sys.stderr)
        return 3
    except PermissionError as e:
        print(f"{e.filename}: your account may not read it (or write there)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
