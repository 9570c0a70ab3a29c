"""Start and stop TensorBoard processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..processes import alive, identity, terminate_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(logdir_args: list[str], port: int, path_prefix: str, log_file: Path) -> dict[str, Any]:
    """Start TensorBoard detached (own session); returns pid and create time."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
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
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends
    return identity(proc.pid)


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
