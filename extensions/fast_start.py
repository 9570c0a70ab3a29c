"""``python -m hubforge.fast_start MODULE ARGS…``: run a Jupyter program as ``python -m MODULE
ARGS…`` would, without the second of CPU that jsonschema spends at import compiling
rfc3987-syntax's ~35 Earley parsers (jupyter_server#1559). JupyterHub and every user's
server pay it at each start. Those parsers check the ``iri`` formats, which no schema of
JupyterHub, Jupyter Server, jupyter_events or nbformat uses; with the package marked absent,
jsonschema checks every other format as before. Hubforge's own dependency keeps jsonschema
below 4.25, which never imports it (so every process starts without it); this keeps the hub
and servers fast where an image installs a newer jsonschema over it.

A user's server also imports JupyterLab's server side without the ``node yarn.js config``
that ``jupyterlab.labapp`` runs at import to look up its own version (~0.3 s and 0.3 CPU-s
at each start; the npm registry it reads is not used by a version lookup)."""

from __future__ import annotations

import runpy
import sys

SLOW = "rfc3987_syntax"


def skip_iri_parsers() -> None:
    """Make ``import rfc3987_syntax`` fail (jsonschema then leaves out the iri checks)."""
    sys.modules.setdefault(SLOW, None)


LAB_SERVERS = {"jupyterhub.singleuser"}  # programs that load JupyterLab's server extension


def import_lab_without_yarn() -> None:
    """Import ``jupyterlab.labapp`` with JupyterLab's yarn-config lookup answering "nothing
    configured" during that import only: its module-level ``get_app_version()`` then reads
    the version without starting node. Everything that asks for the registry later (a
    build, the extension manager) runs yarn as before."""
    if "jupyterlab.labapp" in sys.modules:
        return
    try:
        from jupyterlab import commands
    except ImportError:  # no JupyterLab: nothing to import
        return
    real = getattr(commands, "_yarn_config", None)
    if real is None:  # another JupyterLab: imported as it comes
        return
    commands._yarn_config = lambda logger: {"yarn config": {}, "npm config": {}}
    try:
        import jupyterlab.labapp  # noqa: F401
    finally:
        commands._yarn_config = real


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m hubforge.fast_start MODULE [ARGS...]")
    skip_iri_parsers()
    module = sys.argv.pop(1)
    if module in LAB_SERVERS:
        import_lab_without_yarn()
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
