"""The README's first command in a fresh clone, as a newcomer types it: `make up` sets
everything up and starts the workbench, printing one line per set-up step and nothing a user
would have to read and judge (issue #31: 92 setuptools warnings, npm spinner debris,
Label Studio's own start-up chatter and a call to the package index were on that terminal).

It sets up a whole environment (Python packages, Label Studio, the proxy, the sidebar): about
four minutes with pip's and npm's caches warm, more without. `make test-fresh` runs it (on
the committed tree: it clones HEAD); the suite itself starts from a clone set up the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from hubforge.processes import free_port, workbench_processes
from hubforge.workbench import SOURCE_TREE
from tests.integration.test_make import DOWN_LINES, UP_LINES, unexpected

pytestmark = [
    pytest.mark.hub,
    pytest.mark.skipif(
        os.environ.get("HUBFORGE_FRESH_CLONE") != "1",
        reason="sets up a whole environment in a new clone (~4 min): run `make test-fresh`",
    ),
]

SETUP_LINES = [r"Setting up: .*"]
STEPS = (
    "venv",
    "python",
    "node",
    "label-studio",
    "label-studio-template",
    "labextension",
    "tflite-support",
)


@pytest.mark.timeout(1800)
def test_make_up_in_a_fresh_clone_prints_only_what_a_user_needs():
    root = Path(tempfile.mkdtemp(prefix="hubforge-fresh-", dir="/tmp"))
    root.chmod(0o755)  # as a clone in /srv or a home folder: users' accounts pass
    clone, data, port = root / "hubforge", root / "data", free_port()
    args = f"ARGS=--data-dir {data} --port {port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "HUBFORGE"))}
    path = [d for d in os.environ.get("PATH", os.defpath).split(":") if ".venv" not in d]
    env.update(XDG_STATE_HOME=str(root / "xdg"), PATH=":".join(path))
    subprocess.run(["git", "clone", "-q", str(SOURCE_TREE), str(clone)], check=True)
    started = time.monotonic()
    up = subprocess.Popen(
        ["make", "up", args], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env,
    )  # fmt: skip
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 1500
        while time.monotonic() < deadline and up.poll() is None:
            seen.append(up.stdout.readline())
            if "Hubforge is running at" in seen[-1]:
                break
        ready = time.monotonic() - started
        assert f"Hubforge is running at http://127.0.0.1:{port}/" in "".join(seen), seen[-30:]
        assert requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=30).status_code == 200
    finally:
        down = subprocess.run(
            ["make", "down", args], cwd=clone, capture_output=True, text=True, env=env,
            timeout=180,
        )  # fmt: skip
        up.wait(timeout=120)
        seen += up.stdout.readlines()
        up.stdout.close()
    stamps = clone / ".stamps"
    times = sorted((stamps / s).stat().st_mtime for s in STEPS if (stamps / s).exists())
    print(f"first `make up` in a fresh clone: login page after {ready:.0f} s; set-up steps done "
          f"at {', '.join(f'{t - times[0]:.0f}' for t in times)} s after the first")  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert workbench_processes(str(data)) == []
    lines = [x.rstrip("\n") for x in seen]
    assert unexpected(lines, SETUP_LINES + UP_LINES) == [], lines
    assert sum(1 for x in lines if x.startswith("Setting up: ")) == len(STEPS)
    assert unexpected((down.stdout + down.stderr).splitlines(), DOWN_LINES) == []
    shutil.rmtree(root, ignore_errors=True)
