"""Each user's processes see only their own processes in ``/proc``.

Without this, every account on the machine reads every command line in ``/proc`` (endpoint
names, model paths, TensorBoard log folders, other workbenches' data folders). Mounting the
machine's ``/proc`` with ``hidepid`` would hide users' processes from the workbench's own
system accounts too, and it changes the whole machine. Instead the privileged helper gives the
processes it starts as a user a mount namespace of their own, in which ``/proc`` is a fresh
procfs instance mounted with ``hidepid=invisible``: there an account lists and opens only the
processes it may trace (its own); ``/proc/locks`` is empty and ``/sys/fs/cgroup`` an empty
folder there (both list every process's pid). Everything else (files, loopback, signals) is
unchanged, and mounts of the machine still reach the namespace where the machine's ``/`` is
shared (a systemd machine; it is a slave of the machine's).

What this hides: other accounts' command lines, environments, open files and every other
``/proc`` detail, and the list of their pids. What it does not (only a pid namespace would):
system calls that take any pid (``kill(pid, 0)``, ``getsid``, ``getpgid``) still tell whether
a pid exists and which session it leads; ``/proc/net/tcp`` and ``/proc/net/unix`` still list
every socket with its owner's uid (one network namespace for the machine).

Linux 5.8 and later give each procfs mount its own options; older kernels refuse the
``invisible`` value, and then nothing is changed (the helper says so once in its log).
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_RDONLY = 0x1
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000
OPTIONS = b"hidepid=invisible"

available = False  # set by probe() in the helper, inherited by its children


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def enter() -> None:
    """Move this process (root, about to become a user or start one of their processes) into
    a mount namespace of its own whose ``/proc`` shows each account only its own processes.
    Raises OSError when the machine does not allow it (nothing changed then)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        raise _fail("unshare(CLONE_NEWNS)")
    # mounts made here must never reach the machine (a systemd machine's / is shared)
    if libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) != 0:
        raise _fail("making / a slave mount")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"proc", b"/proc", b"proc", flags, OPTIONS) != 0:
        raise _fail("mounting /proc with hidepid=invisible")
    # what else lists other accounts' processes: /proc/locks (the pid holding each lock) and
    # the cgroup tree (every cgroup.procs lists pids): an empty file and an empty folder
    libc.mount(b"/dev/null", b"/proc/locks", None, MS_BIND, None)
    if os.path.isdir("/sys/fs/cgroup"):
        libc.mount(b"none", b"/sys/fs/cgroup", b"tmpfs", flags | MS_RDONLY, b"size=4k,mode=0555")


def probe() -> bool:
    """Whether this machine lets :func:`enter` work, tried once in a child process (nothing
    changes in this one); the helper says so on stderr (its log) when it does not."""
    global available
    pid = os.fork()
    if pid == 0:
        try:
            enter()
        except OSError as e:
            os._exit(min(e.errno or 1, 255))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    available = code == 0
    if not available:
        print(
            f"hubforge helper: users' processes stay visible to each other in /proc "
            f"({os.strerror(code) if code > 0 else 'the probe failed'}); Linux 5.8 or later "
            "and a helper with CAP_SYS_ADMIN hide them",
            file=sys.stderr,
            flush=True,
        )
    return available


def enter_if_available() -> None:
    """:func:`enter` where :func:`probe` found it works (an error then is the request's)."""
    if available:
        enter()
