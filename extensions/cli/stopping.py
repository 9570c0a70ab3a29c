"""Stopping a workbench: the hub and what it left running, jobs, the user accounts'
processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..processes import sweep, workbench_processes
from ..workbench import Workbench
from .common import _pid_file


def _stop_jobs(workbench: Workbench) -> None:
    """Stop running jobs unless `hubforge down --keep-jobs` asked to leave them."""
    from ..jobs.local import LocalJobBackend

    keep = workbench.state_dir / "keep-jobs"
    if keep.exists():
        keep.unlink()
        _stop_accounts(workbench, keep_jobs=True)
        return
    # signals go only to processes of each job's owner (job.json is the owner's to write)
    try:
        backend = LocalJobBackend.from_workbench(workbench, create_accounts=False)
        stopped = backend.stop_all(
            "stopped with the workbench (hubforge down); `hubforge down --keep-jobs` keeps jobs"
        )
        if stopped:
            print(f"Stopped job(s): {', '.join(stopped)}", file=sys.stderr)
    finally:  # whatever a user's files hold, every process of the accounts is stopped
        _stop_accounts(workbench, keep_jobs=False)


def _stop_accounts(workbench: Workbench, keep_jobs: bool) -> None:
    """Every process of the workbench's user accounts stops with it, whether it carries the
    workbench's marker or not (a job's too, unless `--keep-jobs`)."""
    from ..accounts import AccountError, existing_account
    from ..processes import sweep_accounts

    if workbench.isolation != "accounts":
        return
    uids = set()
    for folder in (workbench.homes_dir, workbench.shared_data / "users"):
        for user in sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []:
            with contextlib.suppress(AccountError):
                uids.add(existing_account(user, workbench.home_of(user), workbench.state_dir).uid)
    uids.discard(0)
    left = sweep_accounts(uids, keep_jobs=keep_jobs)
    if left:
        print(
            f"Stopped {left} process(es) of the workbench's user accounts",
            file=sys.stderr,
        )


def _describe(proc: Any) -> str:
    """'python -m ipykernel_launcher' style: what a leftover process is."""
    try:
        cmd = proc.cmdline()
    except Exception:
        return f"pid {proc.pid}"
    words = [Path(cmd[0]).name] + [c for c in cmd[1:3] if not c.startswith("/")]
    return f"{' '.join(words)} (pid {proc.pid})"


def _stop_hub(
    hub: subprocess.Popen,
    workbench: Workbench,
    stop_jobs: bool = True,
    before_sweep: Callable[[], None] | None = None,
) -> None:
    """Stop the hub, then (``before_sweep``) the proxy and services `up` keeps, then whatever
    of the workbench is left (and its jobs, with ``stop_jobs``)."""
    if hub.poll() is None:
        hub.terminate()
        try:
            hub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.kill()
    if before_sweep is not None:
        before_sweep()
    names = [_describe(p) for p in workbench_processes(workbench.data_dir)]
    left = sweep(workbench.data_dir)
    if left:
        print(
            f"Stopped {left} process(es) the hub left running: {', '.join(names)}",
            file=sys.stderr,
        )
    if stop_jobs:
        _stop_jobs(workbench)
    _pid_file(workbench).unlink(missing_ok=True)
