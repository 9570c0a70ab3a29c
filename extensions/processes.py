"""Find and stop every process a workbench started, so nothing is left orphaned."""

from __future__ import annotations

import contextlib
import os

import psutil

MARKER = "HUBFORGE_WORKBENCH"
# Jobs carry this instead, so `hubforge down --keep-jobs` can leave them running.
JOBS_MARKER = "HUBFORGE_JOBS_OF"


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
