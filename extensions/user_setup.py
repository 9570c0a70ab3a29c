"""What starting a user's server needs done to the machine: their OS account, their folders,
the server process as their account, signals to it, their TensorBoards stopped.

With per-user accounts only root may do most of it, so the privileged helper
(:mod:`hubforge.privileged`) runs these functions for the hub, which asks for them by user
name; without accounts the spawner calls :func:`prepare_folders` itself. Nothing here opens
a path in a user's folder as root except relative to fds opened ``O_NOFOLLOW`` from the
home or the area (:mod:`hubforge.confined`), and nothing of the user's is walked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import accounts, examples
from .accounts import Account
from .confined import UnsafeEntry, make_folders_beneath, make_link_beneath, open_log

SERVER_LOG = ".hubforge/server.log"
SERVER_LOG_KEEP = 20 * 1024 * 1024


class SetupError(RuntimeError):
    """What could not be done for a user; the message says what to do."""


@dataclass(frozen=True)
class Layout:
    """The folders of one workbench (see hubforge.workbench.Workbench)."""

    root: Path
    shared: Path  # $HUBFORGE_DATA

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def homes(self) -> Path:
        return self.root / "homes"

    def home_of(self, user: str) -> Path:
        return self.homes / checked_name(user)

    def area_of(self, user: str) -> Path:
        return self.shared / "users" / checked_name(user)

    @classmethod
    def of(cls, workbench: object) -> Layout:
        return cls(Path(workbench.root), Path(workbench.shared_data))  # type: ignore[attr-defined]


def checked_name(user: object) -> str:
    """A hub user name that is safe as one folder name (JupyterHub's names are)."""
    if (
        not isinstance(user, str)
        or not user
        or len(user) > 255
        or user in (".", "..")
        or user.startswith(".")
        or any(c in user for c in "/\x00\n")
    ):
        raise SetupError(f"{user!r} is not a user name of this workbench")
    return user


def prepare_user(layout: Layout, user: str) -> Account:
    """Root's part of a first (and every) spawn with per-user accounts: the account (made on
    first use), the shared folders' modes, the home and the area owned by the account (0700),
    then the user's folders as in :func:`prepare_folders`."""
    home, area = layout.home_of(user), layout.area_of(user)
    try:
        account = accounts.ensure_account(user, home, layout.state)
        accounts.prepare_shared(layout.root, layout.shared, layout.homes, layout.state)
        accounts.own_folder(home, account)
        accounts.own_folder(area, account)
    except accounts.AccountError as e:
        raise SetupError(f"Could not prepare the OS account of {user}: {e}") from None
    for needed in (Path(sys.executable), home, area):
        closed = accounts.unreachable(needed, account)
        if closed is not None:
            raise SetupError(
                f"The OS account {account.name} cannot reach {needed}: the folder {closed} "
                "is closed to other accounts. Put the workbench's data folder and Python "
                f"where every account can pass (e.g. /srv, /opt), or `chmod o+x {closed}`."
            )
    prepare_folders(layout, user, account)
    return account


def prepare_folders(layout: Layout, user: str, account: Account | None = None) -> None:
    """The home's and the area's folders, the examples and ~/hdfs. With per-user accounts
    (``account``) the home and the area are already the account's: everything in them is
    made relative to fds opened O_NOFOLLOW (never through a link the user put there) and
    given to the account as it is made; nothing of the user's is walked or re-owned."""
    home, area = layout.home_of(user), layout.area_of(user)
    home.mkdir(parents=True, exist_ok=True)
    owner = (account.uid, account.gid) if account is not None else None
    # the example series (label -> train -> watch -> deploy -> pre-label), once per user
    given = layout.state / "examples-copied"
    given.mkdir(mode=0o700, exist_ok=True)
    examples.install(home, given / user, owner)
    if account is None:
        area.mkdir(parents=True, exist_ok=True)
    for sub in ("jobs", "models", "labeling"):
        with contextlib.suppress(UnsafeEntry, NotADirectoryError):  # theirs to fix
            make_folders_beneath(area, sub, owner, 0o755)
    link = home / "hdfs"
    if owner is not None:
        _own_view_of_the_data(layout, user, owner)
    elif not link.is_symlink() and not link.exists():
        link.symlink_to(layout.shared, target_is_directory=True)


def _own_view_of_the_data(layout: Layout, user: str, owner: tuple[int, int]) -> None:
    """~/hdfs with per-user accounts: the user's own area and datasets/, nothing else
    (same paths as the whole mount: ~/hdfs/users/<me>/..., ~/hdfs/datasets/...). Made
    relative to O_NOFOLLOW fds of the home: a link the user put on the way is refused."""
    home = layout.home_of(user)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(home / "hdfs").st_mode):  # the whole area, from before
            os.unlink(home / "hdfs")  # homes/<name> is root's to trust: not a link
    with contextlib.suppress(UnsafeEntry, NotADirectoryError):  # theirs to fix
        make_folders_beneath(home, "hdfs/users", owner, 0o755)
        links = {
            "hdfs/datasets": layout.shared / "datasets",
            f"hdfs/users/{user}": layout.area_of(user),
        }
        for relative, target in links.items():
            make_link_beneath(home, relative, target, owner)


def server_log(home: Path, owner: tuple[int, int] | None) -> int:
    """The user's own server log (~/.hubforge/server.log, the user's file), opened for
    appending relative to O_NOFOLLOW fds of the home; started afresh past SERVER_LOG_KEEP."""
    try:
        fd = open_log(home / SERVER_LOG, owner, root=home)
    except (UnsafeEntry, NotADirectoryError) as e:
        raise SetupError(f"Your server's log cannot be opened: {e}") from None
    if os.fstat(fd).st_size > SERVER_LOG_KEEP:
        os.ftruncate(fd, 0)
    return fd


def start_server(layout: Layout, user: str, argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` as the user's existing account, in the home, in its own session, its
    output in the user's own log; returns the pid. What it prints never reaches the hub's
    log or the admin's terminal."""
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise SetupError("'argv' is a non-empty list of strings")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise SetupError("'env' maps names to strings")
    account = existing(layout, user)
    home = layout.home_of(user)
    log = server_log(home, (account.uid, account.gid))
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            **account.popen_kwargs(),
        )
    except OSError as e:
        raise SetupError(f"Could not start {argv[0]} as {account.name}: {e}") from None
    finally:
        os.close(log)
    return proc.pid


def existing(layout: Layout, user: str) -> Account:
    """The user's account, which an earlier ``prepare`` made."""
    try:
        return accounts.existing_account(user, layout.home_of(user), layout.state)
    except accounts.AccountError as e:
        raise SetupError(f"{e}; it is made when their server is prepared") from None


def drop_to(account: Account) -> None:
    """This process becomes ``account`` for good (only in a process made for that)."""
    os.setgroups([account.shared_gid])
    os.setgid(account.gid)
    os.setuid(account.uid)


def send_signal(pid: object, signum: object, group: object) -> bool:
    """Signal ``pid`` (its process group with ``group``) with this process's rights;
    returns whether it existed. Run as the user's account: the kernel then refuses any
    process that is not theirs."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise SetupError("'pid' is the number of a process of the user's")
    valid = {int(s) for s in signal.Signals}
    if not isinstance(signum, int) or signum not in valid | {0}:
        raise SetupError(f"'signum' is a signal number ({signal.SIGTERM.value} is SIGTERM)")
    try:
        (os.killpg if group else os.kill)(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        raise SetupError(f"process {pid} is not the user's; nothing was signalled") from None
    return True


def stop_tensorboards(layout: Layout, user: str) -> None:
    """Stop the user's TensorBoards (their records are in the home, the user's to write):
    run as the user's account, so a pid the user wrote there reaches only their processes."""
    from .tensorboard.api import stop_processes
    from .tensorboard.store import InstanceStore

    records = layout.home_of(user) / ".hubforge" / "tensorboards.json"
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(records).st_mode):  # a FIFO would block the read
            raise SetupError(f"{records} is not a file: no TensorBoard of yours was stopped")
    stop_processes(InstanceStore(records))
