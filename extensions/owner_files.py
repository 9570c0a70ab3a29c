"""A user's area (``users/<owner>``) as the hubforge service reaches it: read, write, list
and make folders, copy a model in, start and signal the owner's workloads.

Two ways in, one interface:

* :class:`Local` does it in this process. Used where this process may (isolation ``none``:
  everything is one account; root's `hubforge down`; and the privileged helper's child once
  it has become the owner). Every path is opened relative to an fd of the area with
  ``O_NOFOLLOW`` at every level (:mod:`hubforge.confined`), so a link in the area is refused,
  never followed.
* :class:`ThroughHelper`: the service runs as its own system account, which may not enter a
  user's 0700 area at all. Each operation is a request to the privileged helper
  (:mod:`hubforge.privileged`), served by a child process that has already become the owner's
  account: it can reach only what the owner can. Files come back as open descriptors.

Workloads are started from a fixed list (:data:`PROGRAMS`), never an arbitrary command.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import stat
import sys
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .confined import (
    UnsafeEntry,
    copy_tree,
    list_beneath,
    make_folders_beneath,
    open_beneath,
    write_beneath,
)

# what may be started as an owner: name -> module run with `python -m`
PROGRAMS = {
    "job-supervisor": "hubforge.jobs.supervisor",
    "endpoint": "hubforge.serving.server",
}
# never passed to a workload (they change what the interpreter loads)
_UNSAFE_ENV = ("LD_", "PYTHON", "BASH_FUNC")
_SAFE_PYTHON = {"PYTHONUNBUFFERED", "PYTHONIOENCODING"}


class OwnerBusy(RuntimeError):
    """The owner has as many requests in flight as they may."""

    http_status = 429


class OwnerFiles(ABC):
    """One owner's area; every ``relative`` path is inside it and reached without links."""

    def __init__(self, area: Path):
        self.area = Path(area)

    # -- files -----------------------------------------------------------------------
    @abstractmethod
    def open(self, relative: str | os.PathLike) -> int:
        """A read-only fd of the regular file (FileNotFoundError, UnsafeEntry for a link)."""

    def read(
        self, relative: str | os.PathLike, offset: int = 0, limit: int | None = None
    ) -> bytes | None:
        """The file's bytes from ``offset``, at most ``limit`` (None when it is missing)."""
        try:
            fd = self.open(relative)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            f.seek(offset)
            return f.read() if limit is None else f.read(limit)

    def exists(self, relative: str | os.PathLike) -> bool:
        return self.lstat(relative) is not None

    @abstractmethod
    def write(self, relative: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
        """Replace the file with ``data`` atomically."""

    @abstractmethod
    def listdir(self, relative: str | os.PathLike) -> list[str]:
        """The names in the folder, sorted (empty when it does not exist)."""

    @abstractmethod
    def mkdirs(self, relative: str | os.PathLike, mode: int = 0o755, exist_ok: bool = True) -> None:
        """Make the folder and those on the way (FileExistsError without ``exist_ok``)."""

    @abstractmethod
    def lstat(self, relative: str | os.PathLike) -> dict[str, Any] | None:
        """{"kind": "file"|"folder"|"link"|"other", "size", "mtime"}, None when missing."""

    @abstractmethod
    def resolve(self, path: str | os.PathLike) -> Path:
        """Where ``path`` (absolute) really is, links followed with the owner's rights."""

    @abstractmethod
    def copy(self, source: str | os.PathLike, target: str | os.PathLike) -> None:
        """Copy the folder ``source`` (absolute, inside the area) to ``target`` (relative,
        must not exist) with the owner's rights; links out of ``source`` are refused."""

    @abstractmethod
    def remove(self, relative: str | os.PathLike) -> None:
        """Remove the file or folder (nothing when missing)."""

    # -- processes ---------------------------------------------------------------------
    @abstractmethod
    def spawn(
        self,
        program: str,
        args: list[str],
        log: str | os.PathLike,
        env: dict[str, str],
        cwd: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        """Start PROGRAMS[program] as the owner, detached, output appended to ``log``
        (relative); its identity (pid, create_time)."""

    @abstractmethod
    def signal(self, pid: int, signum: int, group: bool = False) -> bool:
        """Signal the owner's process (group); False when it is gone. Another account's
        process is refused (PermissionError), never signalled."""


def _relative(relative: str | os.PathLike) -> str:
    text = os.fspath(relative)
    if not text or os.path.isabs(text) or "\x00" in text:
        raise UnsafeEntry(f"{text!r}: a path inside the user's area is needed")
    return text


def command(program: str, args: list[str]) -> list[str]:
    if program not in PROGRAMS:
        raise UnsafeEntry(f"{program!r} is not a workload the service starts")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UnsafeEntry("a workload's arguments are a list of strings")
    return [sys.executable, "-m", PROGRAMS[program], *args]


def clean_env(env: dict[str, str]) -> dict[str, str]:
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise UnsafeEntry("a workload's environment maps names to strings")
    return {k: v for k, v in env.items() if not k.startswith(_UNSAFE_ENV) or k in _SAFE_PYTHON}


class Local(OwnerFiles):
    """The area as this process reaches it. ``account``: the owner's OS account when this
    process is root acting for them (new files and folders are given to it, and only its
    processes are signalled); None when this process already has the owner's rights (or
    there are no per-user accounts)."""

    def __init__(self, area: Path, account: Any = None):
        super().__init__(area)
        self.account = account

    @property
    def _owner(self) -> tuple[int, int] | None:
        return (self.account.uid, self.account.gid) if self.account is not None else None

    def open(self, relative: str | os.PathLike) -> int:
        return open_beneath(self.area, _relative(relative))

    def write(self, relative: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
        write_beneath(self.area, _relative(relative), data, mode, self._owner)

    def listdir(self, relative: str | os.PathLike) -> list[str]:
        return list_beneath(self.area, _relative(relative))

    def mkdirs(self, relative: str | os.PathLike, mode: int = 0o755, exist_ok: bool = True) -> None:
        if self.account is None:
            os.makedirs(self.area, exist_ok=True)
        make_folders_beneath(self.area, _relative(relative), self._owner, mode, exist_ok)

    def lstat(self, relative: str | os.PathLike) -> dict[str, Any] | None:
        *folders, name = Path(_relative(relative)).parts
        from .confined import _folder_beneath, _parts

        try:
            parent = _folder_beneath(self.area, _parts(Path(*folders)) if folders else [])
        except FileNotFoundError:
            return None
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(parent)
        kind = (
            "folder"
            if stat.S_ISDIR(info.st_mode)
            else "file"
            if stat.S_ISREG(info.st_mode)
            else "link"
            if stat.S_ISLNK(info.st_mode)
            else "other"
        )
        return {"kind": kind, "size": info.st_size, "mtime": info.st_mtime}

    def resolve(self, path: str | os.PathLike) -> Path:
        return Path(os.path.realpath(path))

    def copy(self, source: str | os.PathLike, target: str | os.PathLike) -> None:
        if self.account is not None:
            raise UnsafeEntry("a copy is made by the owner's own account, never for it")
        target = _relative(target)
        real = Path(os.path.realpath(source))
        area = Path(os.path.realpath(self.area))
        if area not in real.parents:
            raise UnsafeEntry(f"{source} is outside the user's area {self.area}")
        parent, name = os.path.split(target)
        if parent:
            self.mkdirs(parent)
        incoming = os.path.join(parent, f".incoming-{name}")
        self.remove(incoming)
        try:
            # copy_tree makes the target itself: the folder above was reached without links
            copy_tree(real, self.area / incoming)
            os.rename(self.area / incoming, self.area / target)
        except BaseException:
            self.remove(incoming)
            raise

    def remove(self, relative: str | os.PathLike) -> None:
        relative = _relative(relative)
        from .confined import _folder_beneath, _parts

        *folders, name = _parts(relative)
        try:
            parent = _folder_beneath(self.area, folders)
        except FileNotFoundError:
            return
        try:
            try:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(name, dir_fd=parent)  # rmtree with dir_fd never follows links
            else:
                os.unlink(name, dir_fd=parent)
        finally:
            os.close(parent)

    def spawn(
        self,
        program: str,
        args: list[str],
        log: str | os.PathLike,
        env: dict[str, str],
        cwd: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        from .processes import spawn_detached

        popen = self.account.popen_kwargs() if self.account is not None else None
        return spawn_detached(
            command(program, args),
            self.area / _relative(log),
            env=clean_env(env),
            cwd=Path(cwd) if cwd else None,
            popen=popen,
            log_root=self.area,
        )

    def signal(self, pid: int, signum: int, group: bool = False) -> bool:
        if self.account is not None:  # root for the owner: only the owner's processes
            import psutil

            try:
                uid = psutil.Process(pid).uids().real
            except psutil.Error:
                return False
            if uid != self.account.uid:
                raise PermissionError(errno.EPERM, f"process {pid} is not the owner's")
        try:
            (os.killpg if group else os.kill)(pid, signum)
        except ProcessLookupError:
            return False
        return True


# -- the helper's side: one request, served as the owner -----------------------------------
OPS = {"open", "write", "list", "mkdirs", "lstat", "resolve", "copy", "remove", "spawn", "signal"}


MAX_WRITE = 64 * 1024 * 1024  # bytes of one write (a job's script is at most 5 MB)


def _sent_bytes(fds: list[int], size: object) -> bytes:
    """The ``size`` bytes of the memory file sent with a write (read from its start)."""
    if len(fds) != 1 or not isinstance(size, int) or not 0 <= size <= MAX_WRITE:
        raise UnsafeEntry("a write sends its bytes as one file descriptor and their 'size'")
    data = os.pread(fds[0], size + 1, 0) if size else b""
    if len(data) != size:
        raise UnsafeEntry(f"the write sent {len(data)} bytes, not the {size} it said")
    return data


def serve(
    area: Path, op: object, args: object, fds: list[int] | None = None
) -> tuple[dict[str, Any], list[int]]:
    """Do ``op`` with ``args`` on ``area`` with this process's rights (the helper's child,
    which has become the owner); the JSON reply and the fds to send with it. ``fds``: the
    descriptors sent with the request (a write's bytes)."""
    if op not in OPS or not isinstance(args, dict):
        raise UnsafeEntry(f"'op' is one of {', '.join(sorted(OPS))}, 'args' an object")
    files = Local(area)
    a: dict[str, Any] = args
    if op == "open":
        return {"ok": True}, [files.open(a["path"])]
    if op == "write":
        data = _sent_bytes(fds or [], a["size"])
        files.write(a["path"], data, _mode(a.get("mode", 0o644)))
        return {"ok": True}, []
    if op == "list":
        return {"ok": True, "names": files.listdir(a["path"])}, []
    if op == "mkdirs":
        files.mkdirs(a["path"], _mode(a.get("mode", 0o755)), bool(a.get("exist_ok", True)))
        return {"ok": True}, []
    if op == "lstat":
        return {"ok": True, "stat": files.lstat(a["path"])}, []
    if op == "resolve":
        return {"ok": True, "path": str(files.resolve(_absolute(a["path"])))}, []
    if op == "copy":
        files.copy(_absolute(a["source"]), a["target"])
        return {"ok": True}, []
    if op == "remove":
        files.remove(a["path"])
        return {"ok": True}, []
    if op == "spawn":
        cwd = a.get("cwd")
        identity = files.spawn(
            a["program"], a.get("args", []), a["log"], a.get("env", {}), cwd and _absolute(cwd)
        )
        return {"ok": True, "process": identity}, []
    pid, signum = a.get("pid"), a.get("signum")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise UnsafeEntry("'pid' is the number of one of the owner's processes")
    if not isinstance(signum, int) or not 0 <= signum < 65:
        raise UnsafeEntry("'signum' is a signal number")
    return {"ok": True, "alive": files.signal(pid, signum, bool(a.get("group")))}, []


def _mode(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        raise UnsafeEntry("'mode' is a permission mode such as 0o644 (no set-id bits)")
    return value


def _absolute(value: object) -> str:
    if not isinstance(value, str) or not os.path.isabs(value) or "\x00" in value:
        raise UnsafeEntry("an absolute path is needed")
    return value


class ThroughHelper(OwnerFiles):
    """The area through the privileged helper's socket for the service (``socket``):
    every operation is done by a child of the helper that has become ``user``'s account."""

    def __init__(self, area: Path, user: str, socket_path: Path, timeout: float = 120):
        super().__init__(area)
        self.user = user
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    # requests one owner may have at the helper at once: what a user makes slow (a huge
    # folder, their helper child stopped with SIGSTOP) holds up their own calls, never the
    # service's threads that serve everyone else
    PER_OWNER = 4
    _owners: dict[str, threading.BoundedSemaphore] = {}
    _owners_lock = threading.Lock()

    def _slot(self) -> threading.BoundedSemaphore:
        with self._owners_lock:
            if self.user not in self._owners:
                self._owners[self.user] = threading.BoundedSemaphore(self.PER_OWNER)
            return self._owners[self.user]

    def _ask(
        self, op: str, fds: list[int] | None = None, **args: Any
    ) -> tuple[dict[str, Any], list[int]]:
        request = {"command": "files", "user": self.user, "op": op, "args": args}
        slot = self._slot()
        if not slot.acquire(timeout=5):
            raise OwnerBusy(
                f"{self.user}'s earlier requests are still being worked on (at most "
                f"{self.PER_OWNER} at once): try again when they are done"
            )
        try:
            timeout = self.timeout if op in ("copy", "spawn") else min(self.timeout, 30)
            return ask(self.socket_path, request, timeout, fds or [])
        finally:
            slot.release()

    def open(self, relative: str | os.PathLike) -> int:
        _, fds = self._ask("open", path=_relative(relative))
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(errno.EIO, "the helper sent no file")
        return fds[0]

    def write(self, relative: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
        if len(data) > MAX_WRITE:
            raise OSError(errno.EFBIG, f"more than {MAX_WRITE} bytes", str(relative))
        # the bytes travel in a memory file whose descriptor goes with the request (a
        # request line stays small, whatever the size of a job's script)
        fd = os.memfd_create("hubforge-write", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._ask("write", [fd], path=_relative(relative), size=len(data), mode=mode)
        finally:
            os.close(fd)

    def listdir(self, relative: str | os.PathLike) -> list[str]:
        return list(self._ask("list", path=_relative(relative))[0]["names"])

    def mkdirs(self, relative: str | os.PathLike, mode: int = 0o755, exist_ok: bool = True) -> None:
        self._ask("mkdirs", path=_relative(relative), mode=mode, exist_ok=exist_ok)

    def lstat(self, relative: str | os.PathLike) -> dict[str, Any] | None:
        return self._ask("lstat", path=_relative(relative))[0]["stat"]

    def resolve(self, path: str | os.PathLike) -> Path:
        return Path(self._ask("resolve", path=os.fspath(path))[0]["path"])

    def copy(self, source: str | os.PathLike, target: str | os.PathLike) -> None:
        self._ask("copy", source=os.fspath(source), target=_relative(target))

    def remove(self, relative: str | os.PathLike) -> None:
        self._ask("remove", path=_relative(relative))

    def spawn(
        self,
        program: str,
        args: list[str],
        log: str | os.PathLike,
        env: dict[str, str],
        cwd: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        reply, _ = self._ask(
            "spawn",
            program=program,
            args=args,
            log=_relative(log),
            env=env,
            cwd=os.fspath(cwd) if cwd else None,
        )
        return dict(reply["process"])

    def signal(self, pid: int, signum: int, group: bool = False) -> bool:
        return bool(self._ask("signal", pid=pid, signum=int(signum), group=group)[0]["alive"])


# errors the helper's child reports, raised again here as what they were
_ERRORS: dict[str, type[Exception]] = {
    "UnsafeEntry": UnsafeEntry,
    "FileNotFoundError": FileNotFoundError,
    "FileExistsError": FileExistsError,
    "PermissionError": PermissionError,
    "NotADirectoryError": NotADirectoryError,
    "IsADirectoryError": IsADirectoryError,
}


def error_reply(error: BaseException) -> dict[str, Any]:
    """How the helper's child reports what failed (raised again by :func:`ask`)."""
    if isinstance(error, OSError) and not isinstance(error, tuple(_ERRORS.values())):
        return {"error": error.strerror or str(error), "errno": error.errno}
    return {"error": str(error), "kind": type(error).__name__}


def ask(
    path: Path, request: dict[str, Any], timeout: float, send: list[int] | None = None
) -> tuple[dict[str, Any], list[int]]:
    """One request on the service's socket of the helper (``send``: descriptors to pass
    with it); the reply and the fds sent back."""
    from .helper_client import HelperError

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
            line = json.dumps(request).encode() + b"\n"
            if send:
                sent = socket.send_fds(conn, [line], send)
                conn.sendall(line[sent:])
            else:
                conn.sendall(line)
        except (FileNotFoundError, ConnectionRefusedError):
            raise HelperError(
                f"the workbench's privileged helper is not running ({path}): restart the "
                "workbench with `hubforge up`"
            ) from None
        except (PermissionError, BrokenPipeError, ConnectionResetError):
            raise HelperError(
                f"the privileged helper does not answer this account ({path})"
            ) from None
        data, fds = b"", []
        while not data.endswith(b"\n") and len(data) < 1 << 20:
            try:
                chunk, got, _, _ = socket.recv_fds(conn, 65536, 4)
            except TimeoutError:
                raise HelperError(
                    f"the privileged helper did not answer within {timeout:.0f} s"
                ) from None
            fds += got
            if not chunk:
                break
            data += chunk
    try:
        reply = json.loads(data)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise HelperError("the privileged helper closed the connection unanswered") from None
    if "error" in reply:
        for fd in fds:
            os.close(fd)
        message = str(reply["error"])
        if "errno" in reply:
            raise OSError(int(reply["errno"]), message)
        raise _ERRORS.get(str(reply.get("kind")), HelperError)(message)
    return reply, fds


class Absent(OwnerFiles):
    """The area of a user who has no account yet (never spawned, submitted or deployed):
    it holds nothing; :meth:`Areas.prepare` makes the account before anything is written."""

    def _none(self) -> PermissionError:
        return PermissionError(errno.EACCES, "this user has no account yet: prepare it first")

    def open(self, relative: str | os.PathLike) -> int:
        raise FileNotFoundError(errno.ENOENT, "no such file", str(self.area / relative))

    def write(self, relative: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
        raise self._none()

    def listdir(self, relative: str | os.PathLike) -> list[str]:
        return []

    def mkdirs(self, relative: str | os.PathLike, mode: int = 0o755, exist_ok: bool = True) -> None:
        raise self._none()

    def lstat(self, relative: str | os.PathLike) -> dict[str, Any] | None:
        return None

    def resolve(self, path: str | os.PathLike) -> Path:
        return Path(os.path.abspath(path))

    def copy(self, source: str | os.PathLike, target: str | os.PathLike) -> None:
        raise self._none()

    def remove(self, relative: str | os.PathLike) -> None:
        return None

    def spawn(
        self,
        program: str,
        args: list[str],
        log: str | os.PathLike,
        env: dict[str, str],
        cwd: str | os.PathLike | None = None,
    ) -> dict[str, Any]:
        raise self._none()

    def signal(self, pid: int, signum: int, group: bool = False) -> bool:
        raise PermissionError(errno.EPERM, f"process {pid} is not this user's")


class _NoAccount:
    """Stands for the account of an owner who has none: nothing is given to it and no
    process is signalled for it (no process runs as uid -1)."""

    uid = gid = -1

    def popen_kwargs(self) -> dict[str, Any]:
        raise PermissionError(errno.EPERM, "this user has no account: nothing runs for them")


def service_socket(root: str | os.PathLike) -> Path:
    """Where the helper answers the hubforge service of the workbench in ``root``."""
    return Path(root) / "run" / "service.sock"


class Areas:
    """Every user's area of a workbench, reached the way this process may (see the module's
    docstring): :meth:`of` one owner's, :meth:`prepare` makes sure an owner's account and
    area exist and are theirs before a workload of theirs starts."""

    def __init__(
        self,
        data_root: str | os.PathLike,
        workbench: Any = None,
        create_accounts: bool = True,
    ):
        self.data_root = Path(data_root)
        self.workbench = workbench
        self.create_accounts = create_accounts
        accounts = workbench is not None and getattr(workbench, "isolation", "none") == "accounts"
        self.mode = "none" if not accounts else "root" if os.geteuid() == 0 else "helper"

    @property
    def separate(self) -> bool:
        """Whether owners have accounts of their own (and workloads run as them)."""
        return self.mode != "none"

    def area(self, owner: str) -> Path:
        return self.data_root / "users" / owner

    def _account(self, owner: str, create: bool) -> Any:
        from .accounts import ensure_account, existing_account

        wb = self.workbench
        if create:
            return ensure_account(owner, wb.home_of(owner), wb.state_dir)
        return existing_account(owner, wb.home_of(owner), wb.state_dir)

    def of(self, owner: str) -> OwnerFiles:
        if self.mode == "helper":
            if self.uid_of(owner) is None:
                return Absent(self.area(owner))  # no account yet: nothing of theirs exists
            return ThroughHelper(self.area(owner), owner, service_socket(self.workbench.root))
        if self.mode == "root":
            from .accounts import AccountError

            try:
                return Local(self.area(owner), self._account(owner, create=False))
            except AccountError:  # a folder from before accounts: read, nothing signalled
                return Local(self.area(owner), _NoAccount())
        return Local(self.area(owner))

    def prepare(self, owner: str) -> int | None:
        """The owner's account exists (made on first use) and owns their area; its uid
        (None without per-user accounts, where the area is just made)."""
        if self.mode == "helper":
            from .helper_client import ask as ask_helper

            reply = ask_helper(
                service_socket(self.workbench.root), {"command": "prepare", "user": owner}
            )
            return int(reply["uid"])
        if self.mode == "root":
            from .accounts import own_folder

            account = self._account(owner, create=self.create_accounts)
            own_folder(self.area(owner), account)
            return account.uid
        self.area(owner).mkdir(parents=True, exist_ok=True)
        return None

    def uid_of(self, owner: str) -> int | None:
        """The owner's account's uid (None without accounts, or when they have none)."""
        if not self.separate:
            return None
        from .accounts import AccountError

        try:
            return self._account(owner, create=False).uid
        except AccountError:
            return None
