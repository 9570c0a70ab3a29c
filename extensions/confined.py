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

    http_status = 409  # a link in the user's own folder: theirs to remove


# -- files of a user's area, opened by a process with more rights than the user ---------------
# The service (root with per-user accounts) reads and writes job records and logs inside
# users/<owner>/, a folder the owner controls: any part of the path may have been swapped for a
# link to the state folder or to another user's area. Each part is opened with O_NOFOLLOW
# relative to the one above it, so nothing outside ``root`` is ever reached.

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# no link, and a pipe or device in the way answers at once instead of blocking the caller
_NEVER_WAIT = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` (a folder) to ``target`` (which must not exist) without following
    links out of ``source``; UnsafeEntry names the first entry it refuses.

    Every folder is opened with O_NOFOLLOW|O_DIRECTORY relative to the one above it and every
    file relative to its folder's fd, so a folder swapped for a link while the copy runs is
    refused, never followed (the service copies on Kubernetes, as itself)."""
    root = source.resolve()
    top = os.open(root, _DIR)
    try:
        if os.readlink(f"/proc/self/fd/{top}") != str(root):
            raise UnsafeEntry(f"{source} changed while it was copied; deploy again")
        target.mkdir(parents=True, exist_ok=False)
        _copy_folder(top, root, Path(), target)
    finally:
        os.close(top)


def _copy_folder(fd: int, root: Path, relative: Path, target: Path) -> None:
    for name in sorted(os.listdir(fd)):
        here = root / relative / name
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            inner = _open_folder(name, fd, here)
            try:
                if not os.path.samestat(info, os.fstat(inner)):
                    raise UnsafeEntry(f"{here} changed while it was copied; deploy again")
                (target / relative / name).mkdir()
                _copy_folder(inner, root, relative / name, target)
            finally:
                os.close(inner)
        elif stat.S_ISLNK(info.st_mode):
            inside = _inside_link(os.readlink(name, dir_fd=fd), root, relative, here)
            _copy_file(_open_file_beneath(root, inside), here, target / relative / name)
        elif stat.S_ISREG(info.st_mode):
            try:
                src = os.open(name, os.O_RDONLY | _NEVER_WAIT, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENXIO):
                    raise UnsafeEntry(f"{here} changed into a link while it was copied") from None
                raise
            _copy_file(src, here, target / relative / name)
        else:
            raise UnsafeEntry(f"{here} is not a regular file (a device, socket or pipe)")


def _open_folder(name: str, fd: int, here: Path) -> int:
    try:
        return os.open(name, _DIR, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeEntry(
                f"{here} is a link or not a folder (it may have just changed into one); the "
                "workbench never follows links in your area (remove the link)"
            ) from None
        raise


def _inside_link(text: str, root: Path, relative: Path, here: Path) -> Path:
    """Where the link ``here`` points, as a path inside ``root`` (UnsafeEntry otherwise)."""
    pointed = Path(os.path.normpath(root / relative / text))  # absolute text replaces the rest
    if pointed != root and root not in pointed.parents:
        raise UnsafeEntry(
            f"{here} links outside the folder (to {pointed}): copy the file itself into the "
            "folder instead"
        )
    if pointed == root:
        raise UnsafeEntry(f"{here} links to a folder: copy the folder itself")
    return pointed.relative_to(root)


def _open_file_beneath(root: Path, relative: Path) -> int:
    try:
        return open_beneath(root, relative)
    except IsADirectoryError:
        raise UnsafeEntry(
            f"{root / relative} is a folder a link points to: copy the folder itself"
        ) from None
    except UnsafeEntry as e:
        if "not a regular file" in str(e):
            raise UnsafeEntry(
                f"{root / relative}: a link points to a folder or a special file; copy the "
                "file itself"
            ) from None
        raise


def _copy_file(fd: int, source: Path, target: Path) -> None:
    """Copy the open regular file ``fd`` (closed here) to the new file ``target``."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeEntry(f"{source} is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as src, open(target, "xb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    finally:
        os.close(fd)


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


def read_beneath(
    root: Path, relative: str | os.PathLike, offset: int = 0, limit: int | None = None
) -> bytes | None:
    """The bytes of root/relative from ``offset``, at most ``limit`` of them (None when it
    does not exist)."""
    try:
        fd = open_beneath(root, relative)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        return f.read() if limit is None else f.read(limit)


def write_beneath(
    root: Path,
    relative: str | os.PathLike,
    data: bytes,
    mode: int = 0o644,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace root/relative with ``data`` atomically (a new file renamed over it), without
    following a link on the way or at the temporary name; ``owner`` (uid, gid) gets it."""
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
                os.fchmod(f.fileno(), mode)
                if owner is not None:
                    os.fchown(f.fileno(), *owner)
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
    finally:
        os.close(parent)


def make_folders_beneath(
    root: Path,
    relative: str | os.PathLike,
    owner: tuple[int, int] | None = None,
    mode: int = 0o755,
    exist_ok: bool = True,
) -> None:
    """Make root/relative and the folders on the way (each made relative to an fd of the one
    above, never through a link; the ones made here get ``mode`` and ``owner``)."""
    parts = _parts(relative)
    fd = os.open(os.path.realpath(root), _DIR)
    try:
        for i, part in enumerate(parts):
            made = False
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                if i == len(parts) - 1 and not exist_ok:
                    raise
            inner = _open_folder(part, fd, root / Path(*parts[: i + 1]))
            os.close(fd)
            fd = inner
            if made:
                os.fchmod(fd, mode)
                if owner is not None:
                    os.fchown(fd, *owner)
    finally:
        os.close(fd)


def make_link_beneath(
    root: Path, relative: str | os.PathLike, target: Path, owner: tuple[int, int] | None = None
) -> None:
    """The symlink root/relative -> ``target`` (made unless something is there already), in
    a folder reached without following links; ``owner`` gets the link itself."""
    *folders, name = _parts(relative)
    parent = _folder_beneath(root, folders)
    try:
        try:
            os.symlink(target, name, target_is_directory=True, dir_fd=parent)
        except FileExistsError:
            return
        if owner is not None:
            os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def open_log(path: Path, owner: tuple[int, int] | None = None, root: Path | None = None) -> int:
    """An fd appending to the log file ``path`` (created if missing, given to ``owner``
    (uid, gid) then); UnsafeEntry when ``path`` is a link or not a regular file, so a
    process writing as root never appends to where a user's link points. With ``root`` (the
    user's area ``path`` is in) every folder on the way from ``root`` is opened without
    following links, and the missing ones are made for ``owner``."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NEVER_WAIT
    try:
        if root is not None:
            relative = path.relative_to(root)
            if len(relative.parts) > 1:
                make_folders_beneath(root, relative.parent, owner)
            fd = open_beneath(root, relative, flags, 0o644)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
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
    if owner is not None and info.st_nlink > 1:  # a second name of a file from elsewhere
        os.close(fd)
        raise UnsafeEntry(
            f"{path} has another name (a hard link); the workbench never writes to it or hands "
            "it over (remove it)"
        )
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
