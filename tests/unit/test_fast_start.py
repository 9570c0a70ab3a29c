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
    from hubforge.hub.spawner import HubforgeLocalSpawner

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
