"""The README's two commands as a user types them: `make up` (with ARGS) starts the
workbench, `make down` with the same ARGS stops it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from hubforge.processes import free_port, workbench_processes
from hubforge.workbench import SOURCE_TREE

pytestmark = pytest.mark.hub


@pytest.mark.timeout(600)
def test_make_up_then_make_down_with_the_same_args(tmp_path):
    data, port = tmp_path / "wb", free_port()
    config = tmp_path / "cfg.py"
    config.write_text('c.Workbench.label_studio_python = ""\n')
    args = f"ARGS=--data-dir {data} --port {port} --config {config}"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"))
    up = subprocess.Popen(
        ["make", "-C", str(SOURCE_TREE), "up", args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline, seen = time.monotonic() + 300, []
        while time.monotonic() < deadline and up.poll() is None:
            seen.append(up.stdout.readline())
            if "Hubforge is running at" in seen[-1]:
                break
        assert f"Hubforge is running at http://127.0.0.1:{port}/" in "".join(seen), seen[-20:]
        assert requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=30).status_code == 200
    finally:
        down = subprocess.run(
            ["make", "-C", str(SOURCE_TREE), "down", args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        up.wait(timeout=120)
        up.stdout.close()
    assert down.returncode == 0, down.stderr
    assert f"Hubforge stopped ({data})." in down.stdout
    assert workbench_processes(str(data)) == []
