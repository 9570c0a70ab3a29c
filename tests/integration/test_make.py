"""The README's two commands as a user types them: `make up` (with ARGS) starts the
workbench, `make down` with the same ARGS stops it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from hubforge.processes import free_port, workbench_processes
from hubforge.workbench import SOURCE_TREE
from tests.workbench import STARTED, passable

pytestmark = pytest.mark.hub


# What the terminal shows of `make up` (set-up done) and `make down`: any other line, a
# warning above all, is noise the user would have to read and judge.
UP_LINES = [
    r"make(\[\d+\])?: (Entering|Leaving) directory .*",
    r"\.venv/bin/hubforge up --data-dir .*",
    r"Starting Hubforge on /.*",
    r"The hub's log: /.*/state/jupyterhub\.log \(errors and warnings to act on show here\)",
    r"  (hub|jobs/serving|Label Studio|proxy routes) +(ready|listening) +\( *[\d.]+ s\)",
    r"[+|].*[+|]",  # the first admin's box
    r"",
    r"Hubforge is running at http://.*/",
    r"Log in with your user name and password \(first admin: see /.*initial-admin\.txt\)\.",
    r"Stop with Ctrl-C or `hubforge down`\.",
]
DOWN_LINES = [
    r"make(\[\d+\])?: (Entering|Leaving) directory .*",
    r"\.venv/bin/hubforge down --data-dir .*",
    r"Hubforge stopped \(/.*\)\.",
]


def unexpected(lines: list[str], allowed: list[str]) -> list[str]:
    return [x for x in lines if not any(re.fullmatch(a, x) for a in allowed)]


@pytest.mark.timeout(600)
def test_make_up_then_make_down_with_the_same_args(tmp_path):
    data, port = tmp_path / "wb", free_port()
    config = tmp_path / "cfg.py"
    config.write_text('c.Workbench.label_studio_python = ""\n')
    args = f"ARGS=--data-dir {data} --port {port} --config {config}"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"))
    passable(data)  # as an admin's data folder is: users are kept apart, no warning
    STARTED.append(data)  # its service accounts go when the suite ends (they were left)
    # set-up's own output (a first `make up`) is not what this looks at: done first
    if subprocess.run(["make", "-C", str(SOURCE_TREE), "-q", "setup"]).returncode != 0:
        subprocess.run(["make", "-C", str(SOURCE_TREE), "setup"], check=True, capture_output=True)
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
        seen += up.stdout.readlines()  # what `up` printed as it stopped
        up.stdout.close()
    assert down.returncode == 0, down.stderr
    assert f"Hubforge stopped ({data})." in down.stdout
    assert workbench_processes(str(data)) == []
    assert unexpected([x.rstrip("\n") for x in seen], UP_LINES) == []
    shown = (down.stdout + down.stderr).splitlines()
    assert unexpected(shown, DOWN_LINES) == [], shown


@pytest.mark.skipif(os.geteuid() != 0, reason="where the environment goes only changes for root")
def test_as_root_a_clone_closed_to_other_accounts_sets_up_in_opt():
    """The README's first command run as root in a clone under a 0700 folder (root's home):
    the environment goes where every user's account can run it, so users are kept apart by
    default; a clone others can pass keeps its .venv. (Make's plan, not a 10-minute set-up.)"""
    base = Path(tempfile.mkdtemp(prefix="hubforge-make-", dir="/tmp"))
    base.chmod(0o755)  # pytest's own folders are 0700: this one only closes where we say
    try:
        _plans(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _plans(base: Path) -> None:
    closed = base / "closed"
    closed.mkdir(mode=0o700)
    clone = closed / "hubforge"
    subprocess.run(["git", "clone", "-q", str(SOURCE_TREE), str(clone)], check=True)
    (clone / "Makefile").write_bytes((SOURCE_TREE / "Makefile").read_bytes())

    def plan(where: os.PathLike) -> str:
        out = subprocess.run(
            ["make", "-C", str(where), "-n", "setup"], capture_output=True, text=True, check=True
        )
        return out.stdout

    planned = plan(clone)
    assert "-m venv /opt/hubforge/venv" in planned
    # the wheel carries the JupyterLab extension: built (with the editable install's jlpm,
    # run by its absolute path) before Hubforge is installed as a copy
    build = planned.index("/opt/hubforge/venv/bin/jlpm run build:lib")
    copy = planned.index("/opt/hubforge/venv/bin/python -m pip install --quiet --quiet --no-deps .")
    assert build < copy and "../../" not in planned
    # the proxy, Label Studio and tflite-support beside it, where Hubforge looks for them
    # (sys.prefix/..)
    assert "npm ci --prefix /opt/hubforge " in planned
    # (uv installs into them: no pip of their own)
    assert "-m venv --without-pip /opt/hubforge/.venvs/label-studio" in planned
    assert "-m venv --without-pip /opt/hubforge/.venvs/tflite-support" in planned
    closed.chmod(0o755)
    planned = plan(clone)
    assert "-m venv .venv" in planned and "pip install --quiet --quiet -e ." in planned
    # uv installs first (the same packages, faster), pip where uv cannot
    assert ".venv/bin/python -m uv pip install --quiet --python .venv/bin/python" in planned
    pip_only = subprocess.run(
        ["make", "-C", str(clone), "-n", "setup", "INSTALLER=pip"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert " -m uv " not in pip_only and "pip install --quiet --quiet label-studio==" in pip_only
    assert "--without-pip" not in pip_only  # pip installs there: each venv gets its own
    assert "--no-deps ." not in planned
