"""Per-user channels of a user's server on a machine that several accounts share (local mode).

Every account on one machine shares loopback and ``/tmp``. A user's server keeps its
channels to itself:

* **a private folder** ``<system temp>/hubforge-XXXXXXXX`` (0700), made by the server itself
  with ``mkdtemp`` (a new random name: nobody can make it first or put a link there, and it
  tells other accounts neither whose it is nor which process made it: the pid is in a file
  inside), removed when the server exits;
* **temp files**: ``TMPDIR`` is its ``tmp/``, so kernels, terminals and TensorBoards started
  from the server write their temp files there (TensorBoard's info files, which hold an
  instance's path key, included);
* **kernels over IPC**: ZMQ channels are Unix sockets in its ``k/`` (``PrivateKernelManager``),
  not TCP ports on loopback, where any account could subscribe to a kernel's iopub; so is
  ipykernel's pipe for forked subprocesses' output (``hubforge.kernel_launcher``).

The local spawner turns this on (``HUBFORGE_PRIVATE_CHANNELS=1`` and ``--KernelManager.
transport=ipc``); a Jupyter server started otherwise (a laptop's ``jupyter lab``, a pod) keeps
Jupyter's defaults. The folder is short on purpose: a Unix socket's path holds at most 107
bytes, which a home folder's ``.local/share/jupyter/runtime`` often exceeds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import psutil
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

ENV = "HUBFORGE_PRIVATE_CHANNELS"
KERNELS = "k"
TEMP = "tmp"
SOCKET_PATH_MAX = 107  # bytes of a Unix socket's path (sockaddr_un.sun_path)
SOCKET_NAME = 12  # hex digits of the kernel's id in its sockets' names

_lock = threading.Lock()
_private: Path | None = None


PREFIX = "hubforge-"  # + random characters: names that tell another account nothing
PID_FILE = "server.pid"  # inside: the pid of the server the folder belongs to


def _remove_stale(base: Path) -> None:
    """Private folders of this account's servers that died without removing theirs."""
    for entry in base.glob(PREFIX + "*"):
        try:
            info = entry.lstat()
            if not (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()):
                continue
            fd = os.open(entry / PID_FILE, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd) as f:
                pid = f.read(16).strip()
        except OSError:
            continue
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _base() -> Path:
    """Where the private folder is made: the system's temp folder, unless anyone could
    rename entries there (world-writable without the sticky bit) or it is too deep for the
    kernels' sockets' paths; then /tmp, then the user's own ``~/.cache``."""
    given = Path(tempfile.gettempdir())  # read before TMPDIR points into the new folder
    safe = [b for b in (given, Path("/tmp")) if _safe_base(b)]
    for base in safe:
        if _room_for_sockets(base):
            return base
    if safe:
        return safe[0]
    base = Path.home() / ".cache"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base


def _room_for_sockets(base: Path) -> bool:
    """Whether <base>/hubforge-XXXXXXXX/k/<id>-pipe fits a socket's path."""
    longest = f"{base}/{PREFIX}XXXXXXXX/{KERNELS}/{'f' * SOCKET_NAME}-pipe"
    return len(os.fsencode(longest)) <= SOCKET_PATH_MAX


def _safe_base(base: Path) -> bool:
    """Nobody but an entry's owner may rename it there (not world-writable, or sticky)."""
    try:
        mode = base.stat().st_mode
    except OSError:
        return False
    return not (mode & stat.S_IWOTH and not mode & stat.S_ISVTX)


def private_dir() -> Path:
    """This process's private folder (made on first use; see the module's doc)."""
    global _private
    with _lock:
        if _private is None:
            base = _base()
            _remove_stale(base)
            made = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
            for sub in (KERNELS, TEMP):
                (made / sub).mkdir(mode=0o700)
            (made / PID_FILE).write_text(f"{os.getpid()}\n")
            atexit.register(_remove, made, os.getpid())
            _private = made
        return _private


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child
        shutil.rmtree(folder, ignore_errors=True)


def activate() -> Path | None:
    """In a user's server started by the local spawner: ``TMPDIR`` -> the private ``tmp/``
    (for this process and all it starts from now on). Returns it; None when not asked to."""
    if os.environ.get(ENV) != "1":
        return None
    temp = private_dir() / TEMP
    os.environ["TMPDIR"] = str(temp)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    return temp


class PrivateChannels:
    """For a kernel manager: with ``transport = "ipc"``, the kernel's ZMQ channels are Unix
    sockets in this process's private folder, ``<private>/k/<kernel id>-<n>``, reachable by
    its account only. Every kernel has its own name, so kernels starting at once never pick
    the same sockets."""

    def _ip_default(self) -> str:
        if self.transport != "ipc":
            return super()._ip_default()
        name = Path(self.connection_file).stem if self.connection_file else ""
        # 12 hex digits of the kernel's id: a socket's whole path must fit in 107 bytes
        name = name.removeprefix("kernel-").replace("-", "")[:SOCKET_NAME]
        name = name or uuid.uuid4().hex[:SOCKET_NAME]
        return str(private_dir() / KERNELS / name)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """This Python's ipykernel over IPC: through ``hubforge.kernel_launcher``, which puts
        ipykernel's pipe for forked subprocesses' output beside the channels (not on TCP)."""
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.transport == "ipc" and cmd[:1] == [sys.executable]:
            for i in range(1, len(cmd) - 1):
                if cmd[i] == "-m" and cmd[i + 1] == "ipykernel_launcher":
                    cmd[i + 1] = "hubforge.kernel_launcher"
                    break
        return cmd


class PrivateKernelManager(PrivateChannels, ServerKernelManager):
    """A user's server's kernels (see :class:`PrivateChannels`)."""
