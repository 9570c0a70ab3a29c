"""With per-user accounts, the privileged helper (hubforge.privileged) `hubforge up` starts
before the hub."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..workbench import Workbench


def _start_helper(
    workbench: Workbench, ports: dict[str, str], hub: Any = None, service: Any = None
) -> subprocess.Popen | None:
    """With per-user accounts the privileged helper (hubforge.privileged, root) does for
    the hub's spawner what needs root (a user's account and folders, their server started
    and signalled as their account), and opens users' files as their owners for Label
    Studio, which runs as its own system account. It also starts the hub's services and
    proxy, each as its account, when the hub asks (hubforge.hub_services): it knows the
    workbench (``HUBFORGE_DIR``, ``HUBFORGE_CONFIG``, the options of `up`) and its ports.
    Started before the hub, stopped after it, dies with `up` (a restarted hub finds it)."""
    if workbench.isolation != "accounts":
        return None
    from ..helper_client import hub_socket

    run = hub_socket(workbench.root).parent
    run.mkdir(exist_ok=True)
    os.chmod(run, 0o711)  # passable (the helper's sockets), not listable
    command, sockets = _helper_command(workbench, hub, service)
    for sock in sockets:
        sock.unlink(missing_ok=True)  # a socket of an earlier start
    helper = subprocess.Popen(
        command,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=_helper_env(workbench, ports),
    )
    _wait_for_sockets(helper, sockets)
    return helper


def _helper_command(workbench: Workbench, hub: Any, service: Any) -> tuple[list[str], list[Path]]:
    """The helper's command line and the sockets it opens (for the hub, the service, and
    Label Studio, whose account is made here)."""
    from ..helper_client import hub_socket
    from ..labeling.server import helper_socket
    from ..owner_files import service_socket

    sockets = [hub_socket(workbench.root)]
    command = [
        # -I: nothing of the folder `up` runs in (or of PYTHON* variables) is imported as root
        *(sys.executable, "-I", "-m", "hubforge.privileged"),
        *("--data", str(workbench.shared_data), "--state", str(workbench.state_dir)),
        *("--hub-socket", str(sockets[0])),
        *("--hub-uid", str(hub.uid if hub is not None else os.geteuid())),
    ]
    if service is not None:
        sockets.append(service_socket(workbench.root))
        command += [
            "--service-socket",
            str(sockets[-1]),
            "--service-uid",
            str(service.uid),
        ]
    if workbench.label_studio_python:
        account = _label_studio_account(workbench)
        sockets.append(helper_socket(workbench))
        command += ["--socket", str(sockets[-1]), "--client-uid", str(account.uid)]
    return command, sockets


def _label_studio_account(workbench: Workbench) -> Any:
    """Label Studio's system account, owner of <data dir>/label-studio (0700)."""
    from ..accounts import AccountError, ensure_service_account, own_folder

    folder = workbench.root / "label-studio"
    try:
        account = ensure_service_account("ls", folder, workbench.state_dir)
        own_folder(folder, account, 0o700)
    except AccountError as e:
        raise SystemExit(f"error: Label Studio's account: {e}") from None
    return account


def _helper_env(workbench: Workbench, ports: dict[str, str]) -> dict[str, str]:
    """The helper's whole environment."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        # the workbench as `up` knows it: --config, --port, --base-url... (HUBFORGE_*)
        **{k: v for k, v in os.environ.items() if k.startswith("HUBFORGE_")},
        "HUBFORGE_DIR": workbench.data_dir,
        **ports,
    }


def _wait_for_sockets(helper: subprocess.Popen, sockets: list[Path]) -> None:
    """Until the helper has opened its sockets (30 s at most), or exited."""
    deadline = time.monotonic() + 30
    while not all(s.exists() for s in sockets) and helper.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
