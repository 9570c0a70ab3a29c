"""Start and stop TensorBoard processes on loopback."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..processes import MARKER, alive, spawn_detached, terminate_group, workload_env
from .launch import PREFIX_ENV, WITH_TF_ENV


def launch(logdir_args: list[str], port: int, path_prefix: str, log_file: Path) -> dict[str, Any]:
    """Start TensorBoard detached (own session); returns pid and create time.

    The path prefix (which holds the instance's key) travels in the environment, not argv;
    the environment is an allow-list, so no token of the server reaches TensorBoard."""
    cmd = [
        sys.executable,
        "-m",
        "hubforge.tensorboard.launch",
        *logdir_args,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load_fast",
        "false",
        "--reload_interval",
        "5",
    ]
    env = workload_env(TF_CPP_MIN_LOG_LEVEL="2", **{PREFIX_ENV: path_prefix.rstrip("/")})
    for name in ("HOME", "USER", MARKER, WITH_TF_ENV):  # caches; `down` finds it by the marker
        if name in os.environ:
            env[name] = os.environ[name]
    return spawn_detached(cmd, log_file, env=env)


def wait_listening(port: int, record: dict[str, Any], timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(record):
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def terminate(record: dict[str, Any], grace: float = 5) -> None:
    terminate_group(record, grace)
