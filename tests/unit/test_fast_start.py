"""``python -m hubforge.fast_start MODULE``: the hub and users' servers start without
compiling rfc3987-syntax's parsers, and run exactly as ``python -m MODULE`` would."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import jsonschema
checker = jsonschema.Draft7Validator.FORMAT_CHECKER
print("loaded" if "rfc3987_syntax" in {k for k, v in sys.modules.items() if v} else "skipped")
print("iri" in checker.checkers, "email" in checker.checkers, "date-time" in checker.checkers)
print(__name__, sys.argv[1:])
"""


def _run(tmp_path, *prefix: str) -> list[str]:
    (tmp_path / "probe_module.py").write_text(PROBE)
    out = subprocess.run(
        [sys.executable, *prefix, "probe_module", "--flag", "x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_the_module_runs_as_main_with_its_arguments_and_without_the_iri_parsers(tmp_path):
    plain = _run(tmp_path, "-m")
    fast = _run(tmp_path, "-m", "hubforge.fast_start")
    # the jsonschema Hubforge installs (<4.25) never compiles them, whichever way a program
    # starts (the CLI, kernels and jobs that import nbformat too); fast_start keeps them out
    # where a newer jsonschema was installed over it
    assert plain[0] == "skipped" and fast[0] == "skipped"
    # only the iri formats are not checked; the other formats are
    assert plain[1] == fast[1] == "False True True"
    assert fast[2] == plain[2] == "__main__ ['--flag', 'x']"


def test_users_servers_are_started_through_it():
    from hubforge.fast_start import LAB_SERVERS
    from hubforge.hub.spawner import HubforgeLocalSpawner

    assert HubforgeLocalSpawner().cmd[3] in LAB_SERVERS  # JupyterLab's import without node
    assert HubforgeLocalSpawner().cmd[:4] == [
        sys.executable,
        "-m",
        "hubforge.fast_start",
        "jupyterhub.singleuser",
    ]


def test_without_a_module_it_says_how_to_call_it():
    out = subprocess.run(
        [sys.executable, "-m", "hubforge.fast_start"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "usage: python -m hubforge.fast_start MODULE" in out.stderr


LAB_PROBE = """
import sys
from hubforge import fast_start
if sys.argv[1] == "fast":
    fast_start.import_lab_without_yarn()
import jupyterlab.labapp
from jupyterlab import commands
print("version", jupyterlab.labapp.app_version)
print("imported")
print("registry", commands.AppOptions().registry)
"""


def test_a_users_server_imports_jupyterlab_without_starting_node(tmp_path):
    """JupyterLab's labapp runs ``node yarn.js config`` at import (0.3 s of each server
    start); through fast_start it does not, and later registry lookups still ask yarn."""
    calls = tmp_path / "node-calls"
    node = tmp_path / "bin" / "node"
    node.parent.mkdir()
    node.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec /usr/bin/node "$@"\n')
    node.chmod(0o755)
    env = {"PATH": f"{node.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(how: str) -> tuple[list[str], int]:
        calls.write_text("")
        out = subprocess.run(
            [sys.executable, "-c", LAB_PROBE, how], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines(), len(calls.read_text().splitlines())

    plain, plain_calls = run("plain")
    fast, fast_calls = run("fast")
    assert plain_calls == 2  # once at import, once for the registry asked after it
    assert fast_calls == 1  # only the registry asked after the import
    assert fast == plain and fast[0].startswith("version 4.")  # the same version, registry
