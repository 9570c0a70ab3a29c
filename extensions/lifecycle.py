"""Running the local workbench: one `hubforge up` per data folder, supervising the hub.

`hubforge up` holds ``state/workbench.lock`` for as long as it runs (a second `up` on the same
folder is refused, whatever its pid file says) and is the hub's supervisor:

* the proxy and the services are `up`'s, not the hub's (:mod:`hubforge.data_path`): the hub
  dies on its own (a crash, kill -9) and is started again on the same loopback ports while
  every route, server, training job and endpoint keeps working; after ``MAX_RESTARTS``
  crashes within ``RESTART_WINDOW`` seconds `up` gives up and says so (jobs and endpoints are
  left running, with that reason);
* `up` itself dies (its terminal closed, kill -9): the kernel sends the hub, the proxy and
  the services SIGTERM (PR_SET_PDEATHSIG) and they stop cleanly; training jobs and endpoints
  keep running and the next `hubforge up` finds them;
* `up` is asked to stop (Ctrl-C, SIGTERM, `hubforge down`): everything stops, jobs too
  unless `hubforge down --keep-jobs`.

The CLI finds the workbench the user started: `up` remembers its data folder
(``$XDG_STATE_HOME/hubforge/data-dir``) and every other command uses it when neither
``--data-dir`` nor ``$HUBFORGE_DIR`` names one.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .atomic import write_text
from .processes import MARKER, free_port

MAX_RESTARTS = 5
RESTART_WINDOW = 600


class AlreadyRunning(RuntimeError):
    """Another `hubforge up` holds this data folder."""


def remembered_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hubforge" / "data-dir"


def remember(data_dir: str) -> None:
    with contextlib.suppress(OSError):  # a read-only home: commands then need --data-dir
        write_text(remembered_file(), data_dir + "\n", mode=0o600)


def _running_dir() -> Path:
    return remembered_file().parent / "running"


def register(data_dir: str) -> Path | None:
    """Note that a `hubforge up` of this account runs on ``data_dir`` (see running())."""
    import hashlib

    entry = _running_dir() / hashlib.sha256(data_dir.encode()).hexdigest()[:16]
    try:
        write_text(entry, data_dir + "\n", mode=0o600)
    except OSError:
        return None
    return entry


def running() -> list[str]:
    """The data folders of this account's workbenches that run now: registered by their
    `up`, and confirmed by the lock it holds (an entry left by a killed `up` is dropped)."""
    found = []
    folder = _running_dir()
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            data_dir = entry.read_text().strip()
            alive = bool(data_dir) and is_locked(Path(data_dir) / "state")
        except OSError:
            alive = False
        if alive:
            found.append(data_dir)
        else:
            entry.unlink(missing_ok=True)
    return found


def remembered() -> str | None:
    """The data folder of the last `hubforge up`, if it still exists."""
    try:
        value = remembered_file().read_text().strip()
    except OSError:
        return None
    return value if value and Path(value).is_dir() else None


def lock(state_dir: Path) -> int:
    """Hold the data folder's workbench lock (a file descriptor kept open until exit)."""
    path = state_dir / "workbench.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(
            f"Hubforge is already running on {state_dir.parent}; stop it with "
            f"`hubforge down --data-dir {state_dir.parent}` or use another --data-dir"
        ) from None
    return fd


def is_locked(state_dir: Path) -> bool:
    """Whether a `hubforge up` holds this data folder right now."""
    path = state_dir / "workbench.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def fixed_ports() -> dict[str, str]:
    """Loopback ports the hub and its services keep across hub restarts."""
    from hubforge.hub.config import FIXED_PORTS

    return {f"HUBFORGE_{name.upper()}_PORT": str(free_port()) for name in FIXED_PORTS}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the `hubforge up` process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setsid()  # Ctrl-C reaches only `up`, which stops the hub once


def hub_account_env(data_dir: str, env: dict[str, str], account: Any) -> tuple[dict, dict]:
    """The environment and Popen arguments of a process of the hub's account (or of `up`'s
    own, without per-user accounts)."""
    env = dict(os.environ, **env, **{MARKER: data_dir, "HUBFORGE_DIR": data_dir})
    as_account: dict[str, Any] = {}
    if account is not None:
        env.update(HOME=str(account.home), HUBFORGE_ISOLATION="accounts")
        env.update(USER=account.name, LOGNAME=account.name)
        as_account = {"user": account.uid, "group": account.gid, "extra_groups": []}
    return env, as_account


def start_hub(
    data_dir: str, state_dir: Path, env: dict[str, str], output: Any = None, account: Any = None
) -> Any:
    """JupyterHub in its own session, stopped by the kernel if `up` dies; its output to
    ``output`` (the log sink's pipe, see :func:`start_log_sink`), else `up`'s. With
    ``account`` (per-user accounts: ``hf<wb>_hub``) it runs as that account, in its own
    folder; the privileged helper does what needs root."""
    from hubforge.hub.config import config_file_path

    env, as_account = hub_account_env(data_dir, env, account)
    return subprocess.Popen(
        [sys.executable, "-m", "hubforge.fast_start", "jupyterhub", "-f", str(config_file_path())],
        cwd=account.home if account is not None else state_dir,
        env=env,
        preexec_fn=_die_with_parent,  # after the switch to the account: kept
        stdout=output,
        stderr=output,
        **as_account,
    )


def start_log_sink(data_dir: str, state_dir: Path, account: Any = None) -> subprocess.Popen:
    """The sink that copies into state/jupyterhub.log what the hub, its proxy and services
    write into its pipe (``.stdin``): a full disk must not stop the proxy (see
    :mod:`hubforge.logsink`). It runs as the hub's account."""
    env, as_account = hub_account_env(data_dir, {}, account)
    return _start_log_sink(state_dir / "jupyterhub.log", env, as_account)


def _start_log_sink(log: Path, env: dict[str, str], as_account: dict[str, Any]) -> subprocess.Popen:
    """The sink that copies the hub's output into ``log``: `up` opens the file (in its own
    state folder, never through a link) and hands it over as the sink's standard output, so
    the sink runs as the hub's account, not root; -I and / (nothing imported from `up`'s
    folder)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    target = os.open(log, flags, 0o600)
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-m", "hubforge.logsink", "-"],
            cwd="/",
            env=env,
            stdin=subprocess.PIPE,
            stdout=target,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C stops the hub; this copies its last lines
            **as_account,
        )
    finally:
        os.close(target)


class Restarts:
    """Crash times within the window: whether another restart is reasonable."""

    def __init__(self, limit: int = MAX_RESTARTS, window: float = RESTART_WINDOW):
        self.limit, self.window = limit, window
        self.times: list[float] = []

    def allow(self) -> bool:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < self.window] + [now]
        return len(self.times) <= self.limit
