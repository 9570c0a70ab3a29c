"""Find and stop every process a workbench started, so nothing is left orphaned."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .confined import open_log

MARKER = "HUBFORGE_WORKBENCH"
# Jobs carry this instead, so `hubforge down --keep-jobs` can leave them running.
JOBS_MARKER = "HUBFORGE_JOBS_OF"


# What a user's job or endpoint may inherit from the process that starts it (the hubforge
# service, or a user's own kernel): never tokens, secrets or the hub's settings.
SAFE_NAMES = {
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
}
SAFE_PREFIXES = ("LC_", "TF_", "CUDA_", "NVIDIA_", "OMP_", "XLA_", "KMP_")


def workload_env(**extra: str) -> dict[str, str]:
    """The environment of a user's workload (job supervisor, workers, endpoint): an allow-list
    of this process's variables plus ``extra``; nothing else, so a job never sees the
    service's hub token or Label Studio's admin secrets."""
    env = {k: v for k, v in os.environ.items() if k in SAFE_NAMES or k.startswith(SAFE_PREFIXES)}
    env.update(extra)
    return env


def workbench_processes(data_dir: str) -> list[psutil.Process]:
    """Processes (other than this one) whose environment marks them as ``data_dir``'s."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER) == data_dir:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def sweep(data_dir: str, grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns how many were running."""
    procs = workbench_processes(data_dir)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(procs)


def sweep_accounts(uids: set[int], keep_jobs: bool = False, grace: float = 5.0) -> int:
    """Stop every process running as one of the workbench's user accounts (``uids``), marked
    or not (a user may start anything without the workbench's marker); with ``keep_jobs``
    the processes of jobs (JOBS_MARKER) are left running. Returns how many were stopped."""
    procs = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real not in uids:
                continue
            if keep_jobs and JOBS_MARKER in proc.environ():
                continue
        except (psutil.Error, OSError):
            continue
        procs.append(proc)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive_ = psutil.wait_procs(procs, timeout=grace)
    for proc in alive_:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(procs)


def identity(pid: int, wait: float = 5) -> dict[str, Any]:
    """What identifies a process across PID reuse: its PID and start time.

    A process just started by one that changed its uid (the helper's children) is, for an
    instant after its exec, not yet readable in a ``/proc`` that hides other processes
    (``hidepid``, :mod:`hubforge.private_proc`): the kernel lets its parent go on before it
    marks the new program traceable. Asked again, it is there."""
    return {"pid": pid, "create_time": _process(pid, wait).create_time()}


def _process(pid: int, wait: float) -> psutil.Process:
    """``psutil.Process(pid)``, asked again for up to ``wait`` seconds while the pid exists
    but its /proc entry is not there or not readable yet (see :func:`identity`)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            proc = psutil.Process(pid)
            proc.create_time()  # psutil.Process() lets a refused read pass: ask here
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError) as error:
            # psutil re-raises the bare FileNotFoundError when the entry it was refused has
            # appeared by the time it looks again: the very instant this loop waits for
            if time.monotonic() > deadline or not _exists(pid):
                if isinstance(error, FileNotFoundError):
                    raise psutil.NoSuchProcess(pid) from error
                raise
            time.sleep(0.005)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(record: dict[str, Any]) -> bool:
    """Whether the process of ``identity(...)`` (``record``) still runs (zombies do not)."""
    try:
        proc = _process(record["pid"], 1)
        return (
            abs(proc.create_time() - record["create_time"]) < 1
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def terminate_group(record: dict[str, Any], grace: float = 10) -> None:
    """SIGTERM the process group ``record`` leads, SIGKILL it after ``grace`` seconds."""
    if not alive(record):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record["pid"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(record):
            time.sleep(0.05)
        if alive(record):
            os.killpg(record["pid"], signal.SIGKILL)


def _ephemeral_start() -> int:
    """The first port the kernel hands out as a connection's own (source) port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on loopback right now, below the kernel's ephemeral range.

    A port from bind(0) is one the kernel also gives outgoing connections as their
    source port: on a busy machine one of them could take it before the program it is
    meant for listens (the proxy then logged EADDRINUSE and never answered).
    """
    low = 10000
    high = _ephemeral_start()
    pick = random.SystemRandom()  # not `random`: a test run seeds it alike in every process
    for _ in range(50 if high - low > 1000 else 0):
        port = pick.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_detached(
    cmd: list[str],
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    popen: dict[str, Any] | None = None,
    log_root: Path | None = None,
) -> dict[str, Any]:
    """Start ``cmd`` in its own session (it outlives the caller), output appended to
    ``log_file``; returns its ``identity``. A thread reaps it when it ends, so long-lived
    callers (kernels, the service) collect no zombies. ``popen``: more Popen arguments
    (``user``/``group`` of the account it runs as, who then owns a new log). A log that is
    a link is refused (UnsafeEntry), never followed; with ``log_root`` (the user's area the
    log is in) no folder on the way from it is followed either."""
    popen = popen or {}
    owner = (popen["user"], popen["group"]) if "user" in popen else None
    with os.fdopen(open_log(log_file, owner, log_root), "ab") as out:  # maybe in a user's folder
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env if env is not None else dict(os.environ),
            cwd=cwd,
            **popen,
        )
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return identity(proc.pid)


def listening_uids(port: int) -> set[int]:
    """The accounts (uids) whose TCP sockets listen on ``port`` now (IPv4 and IPv6), as
    /proc/net/tcp* says: readable by anyone, so the service can check who answers on a port
    before it sends that port a secret."""
    uids: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                uids.add(int(fields[7]))
    return uids
