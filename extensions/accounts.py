"""One OS account per hub user when the workbench runs as root (the shared-server case).

Each user's server, kernels, terminals and TensorBoards run as ``hf<wb>-<name>``, where
``<wb>`` names the workbench (six hex digits of a hash of its state folder: the same user
name on two workbenches of one machine is two accounts); homes and user areas belong to that
account, mode 0700; ``datasets/`` is the one folder all users
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

_PLAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,22}")  # 9 + 23 = 32, the longest name useradd takes


def workbench_tag(state_dir: str | os.PathLike) -> str:
    """``hf`` and six hex digits naming the workbench whose state folder is ``state_dir``."""
    digest = hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()
    return "hf" + digest[:6]


def group_name(state_dir: str | os.PathLike) -> str:
    """The group of one workbench's user accounts (``datasets/`` belongs to it)."""
    return workbench_tag(state_dir) + "_users"  # '_': never a user's own group (hf<wb>-<name>)


class AccountError(RuntimeError):
    """An account could not be made or used; the message says what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path
    shared_gid: int  # the workbench's group (datasets/)

    def popen_kwargs(self) -> dict:
        """Popen arguments that start a process as this account (no root left)."""
        return {
            "user": self.uid,
            "group": self.gid,
            "extra_groups": [self.shared_gid],
            "umask": 0o022,
        }


def account_name(user: str, state_dir: str | os.PathLike) -> str:
    """The OS account of hub user ``user`` on the workbench whose state folder is
    ``state_dir``: injective per workbench ('-' for plain names, '_' + a hash for the rest:
    the two never collide), always a valid Linux user name."""
    tag = workbench_tag(state_dir)
    if _PLAIN.fullmatch(user):
        return f"{tag}-{user}"
    return f"{tag}_" + hashlib.sha256(user.encode()).hexdigest()[:23]


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


def ensure_group(state_dir: Path) -> int:
    """The group every user account of the workbench is in; returns its gid."""
    name = group_name(state_dir)
    with file_lock(state_dir / "accounts.lock", timeout=60):
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            _run(_tool("groupadd") or "groupadd", "--system", name)
            return grp.getgrnam(name).gr_gid


def ensure_account(user: str, home: Path, state_dir: Path) -> Account:
    """The account of ``user`` on this workbench, created on first use (a system account
    without a password: nobody logs in to it, the hub starts processes as it). An existing
    account of that name whose home is elsewhere is refused, never adopted."""
    name = account_name(user, state_dir)
    shared_gid = ensure_group(state_dir)
    with file_lock(state_dir / "accounts.lock", timeout=60):
        legacy = _legacy_account(user, home)
        if legacy is not None:  # made by an earlier version for this very home: kept
            if shared_gid not in os.getgrouplist(legacy.pw_name, legacy.pw_gid):
                _run(
                    _tool("usermod") or "usermod", "-a", "-G", group_name(state_dir), legacy.pw_name
                )
            return Account(legacy.pw_name, legacy.pw_uid, legacy.pw_gid, home, shared_gid)
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
                group_name(state_dir),
                "--comment",
                f"Hubforge user {user}",
                name,
            )
            entry = pwd.getpwnam(name)
    if os.path.realpath(entry.pw_dir) != os.path.realpath(home):
        raise AccountError(
            f"the OS account {name} exists already with the home {entry.pw_dir}, not this "
            f"workbench's {home}: it is not this workbench's to use. Remove it "
            f"(`userdel {name}`) if nothing of it is needed any more"
        )
    return Account(name, entry.pw_uid, entry.pw_gid, home, shared_gid)


def _legacy_account(user: str, home: Path) -> pwd.struct_passwd | None:
    """The account an earlier version made for ``user`` (``hubforge-<name>`` or
    ``hubforge_<hash>``), if its home is exactly ``home``: that account was made for this
    workbench (a home is one workbench's), so its files stay its own after an upgrade. One
    whose home is elsewhere belongs to another workbench and is never used."""
    plain = re.fullmatch(r"[a-z0-9][a-z0-9-]{0,22}", user)
    old = (
        "hubforge-" + user
        if plain
        else "hubforge_" + hashlib.sha256(user.encode()).hexdigest()[:23]
    )
    try:
        entry = pwd.getpwnam(old)
    except KeyError:
        return None
    if entry.pw_uid == 0 or os.path.realpath(entry.pw_dir) != os.path.realpath(home):
        return None
    return entry


def service_account_name(role: str, state_dir: str | os.PathLike) -> str:
    """The system account a shared component of the workbench runs as (``role``: 'ls' for
    Label Studio): ``hf<wb>_<role>``, never a user's account ('-' + a plain name, or '_' and
    23 hex digits)."""
    return f"{workbench_tag(state_dir)}_{role}"


def ensure_service_account(role: str, home: Path, state_dir: Path) -> Account:
    """The system account of a shared component (made once, no login, in no user's group);
    an existing account of that name with another home is refused."""
    name = service_account_name(role, state_dir)
    with file_lock(state_dir / "accounts.lock", timeout=60):
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
                "/usr/sbin/nologin",
                "--user-group",
                "--comment",
                f"Hubforge {role} of {state_dir.parent}",
                name,
            )
            entry = pwd.getpwnam(name)
    if os.path.realpath(entry.pw_dir) != os.path.realpath(home):
        raise AccountError(
            f"the OS account {name} exists already with the home {entry.pw_dir}, not "
            f"{home}: remove it (`userdel {name}`) if nothing of it is needed any more"
        )
    return Account(name, entry.pw_uid, entry.pw_gid, home, entry.pw_gid)


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def own_folder(path: Path, account: Account, mode: int = 0o700) -> None:
    """``path`` (a home or a user area: a folder in a folder only root may change) exists and
    belongs to ``account`` with ``mode``. Root never walks a tree the user controls: a folder
    the account already owns keeps its contents as they are. Only a folder still root's (made
    before accounts existed) has its contents handed over, by ``_hand_over``."""
    parent = os.lstat(path.parent)
    if parent.st_uid != 0 or parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AccountError(
            f"{path.parent} must belong to root and be writable by root alone "
            f"(owner uid {parent.st_uid}, mode {oct(stat.S_IMODE(parent.st_mode))})"
        )
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, _DIR)
    except OSError as e:
        raise AccountError(f"{path} is a link or not a folder; refusing to hand it over") from e
    try:
        info = os.fstat(fd)
        if info.st_uid not in (0, account.uid):
            raise AccountError(
                f"{path} belongs to uid {info.st_uid}, not to {account.name}: another "
                "account's folder is never handed over (move it aside first)"
            )
        if info.st_uid == 0:  # still root's: nobody but root could change it so far
            _hand_over(fd, account)
        if (info.st_uid, info.st_gid) != (account.uid, account.gid):
            os.fchown(fd, account.uid, account.gid)
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _hand_over(fd: int, account: Account) -> None:
    """Give what is in the folder ``fd`` to ``account``: each folder opened O_NOFOLLOW
    relative to the one above, each entry changed by name relative to its folder's fd without
    following it, so a folder swapped for a link on the way is skipped, never followed; a file
    with more than one name (a hard link from elsewhere) is left as it is."""
    for name in os.listdir(fd):
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                try:
                    inner = os.open(name, _DIR, dir_fd=fd)
                except OSError:
                    continue  # became a link or vanished: not ours to follow
                try:
                    if os.path.samestat(info, os.fstat(inner)):
                        _hand_over(inner, account)
                        os.fchown(inner, account.uid, account.gid)
                finally:
                    os.close(inner)
            elif not (stat.S_ISREG(info.st_mode) and info.st_nlink > 1):
                os.chown(name, account.uid, account.gid, dir_fd=fd, follow_symlinks=False)


def prepare_shared(data_dir: Path, shared: Path, homes: Path, state: Path) -> None:
    """Modes of the folders every account passes through: the data folder and its parents
    traversable, homes/ and users/ not listable, state/ root's alone, datasets/ shared."""
    gid = grp.getgrnam(group_name(state)).gr_gid
    for folder, mode in ((data_dir, 0o755), (shared, 0o755), (homes, 0o711)):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, mode)
    (shared / "users").mkdir(exist_ok=True)
    os.chmod(shared / "users", 0o711)
    datasets = shared / "datasets"
    datasets.mkdir(exist_ok=True)
    os.chown(datasets, 0, gid)
    os.chmod(datasets, 0o3775)  # group members add; sticky: only the owner renames/deletes
    models = datasets / "base-models"  # the team's base models (hubforge.automl): the same
    with contextlib.suppress(FileExistsError):  # a user's entry of that name is left alone
        os.mkdir(models, 0o700)
        os.chown(models, 0, gid)
        os.chmod(models, 0o3775)
    close_state(state)
    # Label Studio's database holds every labeling account's token
    label_studio = data_dir / "label-studio"
    if label_studio.is_dir():
        os.chmod(label_studio, 0o700)


# state/ files the hub's account reads (its password hashes, its token for the service);
# they are written 0640 and take state/'s group (set-gid folder): the hub's
HUB_READS = ("passwords.json", "service-token")


def state_file_mode(path: Path) -> int:
    """0640 for a HUB_READS file in a state/ that is the hub's group's (set-gid, see
    close_state), else 0600: never readable by a group that is not the hub's alone."""
    try:
        shared = os.stat(path.parent).st_mode & stat.S_ISGID
    except OSError:
        shared = 0
    return 0o640 if shared and path.name in HUB_READS else 0o600


def close_state(state: Path) -> None:
    """state/ is root's: with the hub's own account (``hf<wb>_hub``) it may pass, not list,
    and read only the files made 0640 for it (HUB_READS); its own files are in state/hub/."""
    try:
        gid = grp.getgrnam(service_account_name("hub", state)).gr_gid
    except KeyError:
        os.chmod(state, 0o700)
        return
    os.chown(state, 0, gid)
    os.chmod(state, 0o2710)
    for name in HUB_READS:
        with contextlib.suppress(FileNotFoundError):
            os.chown(state / name, 0, gid, follow_symlinks=False)
            if not (state / name).is_symlink():
                os.chmod(state / name, 0o640)


def unreachable(path: Path, account: Account) -> Path | None:
    """The first folder on the way to ``path`` that ``account`` cannot pass (no x for it),
    or None. Checked from the modes, as the kernel would."""
    groups = {account.gid, account.shared_gid}
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


def account_lookup(workbench: Any, create: bool = True) -> Callable[[str], Account] | None:
    """For backends that start a user's workloads (jobs, endpoints): owner -> their account
    (made if the user never spawned a server, unless ``create`` is False: AccountError then);
    None unless isolation is 'accounts'."""
    if getattr(workbench, "isolation", "none") != "accounts":
        return None

    def lookup(owner: str) -> Account:
        if create:
            return ensure_account(owner, workbench.home_of(owner), workbench.state_dir)
        return existing_account(owner, workbench.home_of(owner), workbench.state_dir)

    return lookup


def existing_account(user: str, home: Path, state_dir: Path) -> Account:
    """The account of ``user`` on this workbench if it exists (AccountError otherwise);
    never makes one."""
    try:
        shared_gid = grp.getgrnam(group_name(state_dir)).gr_gid
        entry = _legacy_account(user, home) or pwd.getpwnam(account_name(user, state_dir))
    except KeyError:
        raise AccountError(f"{user} has no OS account on this workbench") from None
    if os.path.realpath(entry.pw_dir) != os.path.realpath(home):
        raise AccountError(f"{entry.pw_name} is not this workbench's account of {user}")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, home, shared_gid)


def as_account(account: Account, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a child process that has become ``account`` (root working in a
    folder that account owns never does it with root's rights); its result, or the
    exception it raised, raised here again. Output goes where this process's goes."""
    import pickle
    import sys

    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: becomes the account for good, answers, ends
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(account.gid)
            os.setuid(account.uid)
            outcome: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as e:  # handed to the parent, raised there
            outcome = ("error", e)
        try:
            data = pickle.dumps(outcome)
        except Exception as e:
            data = pickle.dumps(("error", RuntimeError(f"{type(e).__name__}: {e}")))
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    if not data:
        raise AccountError(f"the process run as {account.name} ended without an answer")
    kind, value = pickle.loads(data)  # from our own child, never from a user
    if kind == "error":
        raise value
    return value
