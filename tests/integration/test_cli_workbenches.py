"""The CLI never guesses which workbench (#31): with two running on one machine, `users add`
as the README writes it added the user to the other one (the "last `up`" pointer), and a
plain `down` would have stopped it. Now it finds the running ones through their `up`s' locks:
one running, it acts on that one; several, the workbench commands refuse and list them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests import cli_record
from tests.workbench import service_dir, start_workbench

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]
CONFIG = 'c.Workbench.label_studio_python = ""\n'


def cli(*args: str, xdg) -> subprocess.CompletedProcess:
    """`hubforge ARGS` with no --data-dir, as a person types it."""
    env = {k: v for k, v in os.environ.items() if k != "HUBFORGE_DIR"}
    env["XDG_STATE_HOME"] = str(xdg)
    return cli_record.run(args, capture_output=True, text=True, env=env, timeout=120, cwd="/")


def test_with_two_running_the_cli_refuses_to_guess_and_with_one_uses_it(tmp_path):
    xdg = tmp_path / "xdg"
    first = start_workbench(tmp_path / "first", config=CONFIG, xdg=xdg)
    second = None
    try:
        second = start_workbench(tmp_path / "second", config=CONFIG, xdg=xdg)
        for args in (("users", "add", "carol"), ("down",), ("status",)):
            done = cli(*args, xdg=xdg)
            assert done.returncode != 0, (args, done.stdout, done.stderr)
            said = done.stderr
            assert "2 workbenches are running here" in said, said
            assert f"--data-dir {tmp_path / 'first'}" in said, said
            assert f"--data-dir {tmp_path / 'second'}" in said, said
        # nothing was done to either: both still run, nobody was added
        assert first.proc.poll() is None and second.proc.poll() is None
        for wb in (first, second):
            assert "carol" not in (service_dir(wb.data_dir) / "passwords.json").read_text()
        # the last `up` (second) stops: commands act on the one still running, not on it
        second.down()
        added = cli("users", "add", "carol", xdg=xdg)
        assert added.returncode == 0, added.stderr
        assert f"Workbench: {tmp_path / 'first'}" in added.stderr
        assert "carol" in (service_dir(first.data_dir) / "passwords.json").read_text()
        assert "carol" not in (service_dir(second.data_dir) / "passwords.json").read_text()
        status = cli("status", xdg=xdg)
        assert status.returncode == 0 and str(tmp_path / "first") in status.stdout, status
    finally:
        if second is not None and second.proc.poll() is None:
            second.down()
        first.down()
