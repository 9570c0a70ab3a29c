"""A workbench of its own with per-user OS accounts (Workbench.isolation='accounts', run as
root), for the files where one user attacks another: each user made and their server started,
and everything removed afterwards (servers, the workbench, its accounts and their group)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hubforge import accounts
from tests.workbench import RunningWorkbench, start_workbench

ACCOUNTS_CONFIG = 'c.Workbench.isolation = "accounts"\nc.Workbench.label_studio_python = ""\n'


def why_no_accounts() -> str | None:
    """Why this run cannot make OS accounts (the skip's reason), or None."""
    if os.geteuid() != 0:
        return "per-user OS accounts need root (the shared-server case); this run is not root"
    if not accounts.available():
        return "useradd is not installed, so no OS account can be made"
    closed = accounts.closed_folder(sys.executable)
    if closed:
        return (
            f"the tests' Python ({sys.executable}) is under {closed}, which other accounts "
            "cannot pass: `make setup` builds the venv from /usr/bin/python3.11 and in a "
            "folder every account reaches"
        )
    return None


@contextlib.contextmanager
def accounts_workbench(
    prefix: str, users: tuple[str, ...]
) -> Iterator[tuple[RunningWorkbench, dict[str, str]]]:
    """(workbench, each user's token), every user's server started."""
    # a data folder every account can pass through (pytest's own tmp folders are 0700)
    data = Path(tempfile.mkdtemp(prefix=f"hubforge-{prefix}-", dir="/tmp"))
    data.chmod(0o755)
    wb = start_workbench(data / "wb", config=ACCOUNTS_CONFIG)
    tokens: dict[str, str] = {}
    try:
        for user in users:
            tokens[user] = wb.create_user(user)
            assert wb.spawn(user, tokens[user]).status_code in (201, 202)
        yield wb, tokens
    finally:
        for user in tokens:
            wb.ensure_stopped(user)
        wb.down()
        for user in users:
            name = accounts.account_name(user, wb.state_dir)
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", accounts.group_name(wb.state_dir)], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
