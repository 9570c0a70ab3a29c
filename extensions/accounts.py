"""One OS account per hub user when the workbench runs as root (the shared-server case).

Each user's server, kernels, terminals and TensorBoards run as ``hubforge-<name>``; homes and
user areas belong to that account, mode 0700; ``datasets/`` is the one folder all users
share (sticky: each may add, and change only what they added). Modelled on The Littlest
JupyterHub's ``jupyter-<name>`` system users; written for this project.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import file_lock

PREFIX = "hubforge-"
HASHED_PREFIX = "hubforge_"  # '_' never appears in a plain mapping: the two never collide
GROUP = "hubforge-users"
_PLAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,22}")  # 9 + 23 = 32, the longest name useradd takes


class AccountError(RuntimeError):
    """An account could not be made or used; the message says what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path

    def popen_kwargs(self) -> dict:
        """Popen arguments that start a process as this account (no root left)."""
        return {
            "user": self.uid,
            "group": self.gid,
            "extra_groups": [grp.getgrnam(GROUP).gr_gid],
            "umask": 0o022,
        }


def account_name(user: str) -> str:
    """The OS account of hub user ``user``: injective, always a valid Linux user name."""
    if _PLAIN.fullmatch(user):
        return PREFIX + user
    return HASHED_PREFIX + hashlib.sha256(user.encode()).hexdigest()[:23]


def available() -> bool:
    """Accounts can be made here: root with useradd."""
    return os.geteuid() == 0 and _tool("useradd") is not None


def closed_folder(path: str | os.PathLike) -> str | None:
    """The first folder on the way to ``path`` that other accounts cannot pass (None: all
    of them can); the folders ``path`` needs but that do not exist yet are not checked."""
    current = Path("/")
    for part in Path(os.path.realpath(path)).parts[1:]:
        if not current.exists():
            return None
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return str(current)
        current = current / part
    return None


def refusal(data_dir: str | os.PathLike) -> str | None:
    """Why per-user accounts cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "it runs as an ordinary account, not root"
    if _tool("useradd") is None:
        return "useradd is not installed (apt-get install passwd)"
    for what, path in (("Python", sys.executable), ("the data folder", data_dir)):
        closed = closed_folder(path)
        if closed:
            return (
                f"{closed} is closed to other accounts, and {what} ({path}) is inside it: "
                "install Hubforge and its data where every account can pass (e.g. /opt, /srv)"
            )
    return None


def _tool(name: str) -> str | None:
    for folder in ("/usr/sbin", "/sbin", "/usr/bin"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return None


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AccountError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")


def ensure_group(lock_dir: Path) -> None:
    """The group every user account is in (datasets/ belongs to it)."""
    with file_lock(lock_dir / "accounts.lock", timeout=60):
        try:
            grp.getgrnam(GROUP)
        except KeyError:
            _run(_tool("groupadd") or "groupadd", "--system", GROUP)


def ensure_account(user: str, home: Path, lock_dir: Path) -> Account:
    """The account of ``user``, created on first use (a system account without a password:
    nobody logs in to it, the hub starts processes as it)."""
    name = account_name(user)
    ensure_group(lock_dir)
    with file_lock(lock_dir / "accounts.lock", timeout=60):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            _run(
                _tool("useradd") or "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/bin/bash",
                "--user-group",
                "--groups",
                GROUP,
                "--comment",
                f"Hubforge user {user}",
                name,
            )
            entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid, home)


def own_tree(path: Path, account: Account, mode: int = 0o700, force: bool = False) -> None:
    """``path`` and what is in it belong to ``account`` (never following links); ``path``
    itself gets ``mode``. Files made before accounts existed (by root) become the user's.
    Without ``force`` a folder that already has the right owner and mode is left as it is
    (spawns stay fast)."""
    path.mkdir(parents=True, exist_ok=True)
    top = os.lstat(path)
    if stat.S_ISLNK(top.st_mode):
        raise AccountError(f"{path} is a link; refusing to hand over where it points")
    same = (top.st_uid, top.st_gid) == (account.uid, account.gid)
    if same and stat.S_IMODE(top.st_mode) == mode and not force:
        return
    for root, dirs, files in os.walk(path):
        for entry in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, entry), account.uid, account.gid)
    os.lchown(path, account.uid, account.gid)
    os.chmod(path, mode)


def prepare_shared(data_dir: Path, shared: Path, homes: Path, state: Path) -> None:
    """Modes of the folders every account passes through: the data folder and its parents
    traversable, homes/ and users/ not listable, state/ root's alone, datasets/ shared."""
    gid = grp.getgrnam(GROUP).gr_gid
    for folder, mode in ((data_dir, 0o755), (shared, 0o755), (homes, 0o711)):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, mode)
    (shared / "users").mkdir(exist_ok=True)
    os.chmod(shared / "users", 0o711)
    datasets = shared / "datasets"
    datasets.mkdir(exist_ok=True)
    os.chown(datasets, 0, gid)
    os.chmod(datasets, 0o3775)  # group members add; sticky: only the owner renames/deletes
    os.chmod(state, 0o700)
    # Label Studio's database holds every labeling account's token
    label_studio = data_dir / "label-studio"
    if label_studio.is_dir():
        os.chmod(label_studio, 0o700)


def unreachable(path: Path, account: Account) -> Path | None:
    """The first folder on the way to ``path`` that ``account`` cannot pass (no x for it),
    or None. Checked from the modes, as the kernel would."""
    groups = {account.gid, grp.getgrnam(GROUP).gr_gid}
    current = Path("/")
    for part in Path(os.path.realpath(path)).parts[1:]:
        info = os.stat(current)
        if info.st_uid == account.uid:
            ok = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            ok = info.st_mode & stat.S_IXGRP
        else:
            ok = info.st_mode & stat.S_IXOTH
        if not ok:
            return current
        current = current / part
    return None


def account_lookup(workbench: Any) -> Callable[[str], Account] | None:
    """For backends that start a user's workloads (jobs, endpoints): owner -> their account
    (made if the user never spawned a server); None unless isolation is 'accounts'."""
    if getattr(workbench, "isolation", "none") != "accounts":
        return None

    def lookup(owner: str) -> Account:
        return ensure_account(owner, workbench.home_of(owner), workbench.state_dir)

    return lookup
