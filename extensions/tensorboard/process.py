"""Start and stop TensorBoard processes on loopback."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..processes import alive, spawn_detached, terminate_group


def launch(logdir_args: list[str], port: int, path_prefix: str, log_file: Path) -> dict[str, Any]:
    """Start TensorBoard detached (own session); returns pid and create time."""
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        *logdir_args,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--path_prefix",
        path_prefix.rstrip("/"),
        "--load_fast",
        "false",
        "--reload_interval",
        "5",
    ]
    return spawn_detached(cmd, log_file, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


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
