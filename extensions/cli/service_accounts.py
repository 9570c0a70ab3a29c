"""With per-user accounts, the accounts `hubforge up` makes (as root) for the proxy, the hub
and the hubforge service, and running code as the service's account."""

from __future__ import annotations

import os
from typing import Any

from ..workbench import Workbench


def _proxy_account(workbench: Workbench) -> None:
    """With per-user accounts the hub starts its proxy as ``hf<wb>_proxy`` (see
    hubforge.hub.config.proxy_command); the account is made here, by root, before the hub."""
    if workbench.isolation != "accounts":
        return
    from ..accounts import AccountError, ensure_service_account

    run = workbench.root / "run"
    run.mkdir(exist_ok=True)
    os.chmod(run, 0o711)  # passable (the helper's socket), not listable
    try:
        ensure_service_account("proxy", run, workbench.state_dir)
    except AccountError as e:
        raise SystemExit(f"error: the proxy's account: {e}") from None


def _hub_account(workbench: Workbench) -> Any:
    """With per-user accounts the hub runs as the workbench's ``hf<wb>_hub`` account, made
    here by root: its own files in state/hub (0700, moved there from state/ by an upgrade),
    and state/ passable for it, with only its password hashes and service token readable."""
    if workbench.isolation != "accounts":
        return None
    from hubforge.hub.config import service_token

    from ..accounts import AccountError, close_state, ensure_service_account, own_folder

    folder = workbench.hub_dir
    try:
        account = ensure_service_account("hub", folder, workbench.state_dir)
        own_folder(folder, account, 0o700)
    except AccountError as e:
        raise SystemExit(f"error: the hub's account: {e}") from None
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret"):
        old, new = workbench.state_dir / name, folder / name
        if old.is_file() and not old.is_symlink() and not os.path.lexists(new):
            os.rename(old, new)  # state/ is root's alone: nobody swapped these
            os.chown(new, account.uid, account.gid, follow_symlinks=False)
    service_token(workbench)  # made by root; the hub may only read it
    close_state(workbench.state_dir)
    return account


# the service's own files, moved from state/ into <data dir>/service by an upgrade
SERVICE_FILES = (
    "passwords.json",
    "gpus.json",
    "endpoints.json",
    "endpoints-starting.json",
    "label-studio-users.json",
    "label-studio-shares.json",
)


def _service_account(workbench: Workbench, hub: Any) -> Any:
    """With per-user accounts the hubforge service runs as ``hf<wb>_svc``, made here by
    root, with its own files in <data dir>/service (its account's; the hub's group may read
    the password hashes there, nothing else: files are 0600 but passwords.json, 0640).
    Users' areas it reaches only through the privileged helper, as their owners."""
    if workbench.isolation != "accounts":
        return None
    from dataclasses import replace

    from ..accounts import AccountError, ensure_service_account, own_folder

    folder = workbench.service_dir
    try:
        account = ensure_service_account("svc", folder, workbench.state_dir)
        # group: the hub's (it reads passwords.json); set-gid, so new files get it too
        own_folder(folder, replace(account, gid=hub.gid), 0o2750)
    except AccountError as e:
        raise SystemExit(f"error: the hubforge service's account: {e}") from None
    for name in SERVICE_FILES:
        old, new = workbench.state_dir / name, folder / name
        if old.is_file() and not old.is_symlink() and not os.path.lexists(new):
            os.rename(old, new)  # state/ is root's alone: nobody swapped these
            os.chown(new, account.uid, hub.gid, follow_symlinks=False)
    return account


def _as_service(workbench: Workbench, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` as the hubforge service's account when its files are the service's
    (per-user accounts; root never writes in a folder another account owns), else here."""
    if workbench.isolation != "accounts" or os.geteuid() != 0:
        return fn(*args)
    from ..accounts import as_account

    service = _service_account(workbench, _hub_account(workbench))
    return as_account(service, fn, *args)
