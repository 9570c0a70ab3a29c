"""``python -m hubforge.fast_start MODULE ARGS…``: run a Jupyter program as ``python -m MODULE
ARGS…`` would, without the second of CPU that jsonschema spends at import compiling
rfc3987-syntax's ~35 Earley parsers (jupyter_server#1559). JupyterHub and every user's
server pay it at each start. Those parsers check the ``iri`` formats, which no schema of
JupyterHub, Jupyter Server, jupyter_events or nbformat uses; with the package marked absent,
jsonschema checks every other format as before. Hubforge's own dependency keeps jsonschema
below 4.25, which never imports it (so every process starts without it); this keeps the hub
and servers fast where an image installs a newer jsonschema over it."""

from __future__ import annotations

import runpy
import sys

SLOW = "rfc3987_syntax"


def skip_iri_parsers() -> None:
    """Make ``import rfc3987_syntax`` fail (jsonschema then leaves out the iri checks)."""
    sys.modules.setdefault(SLOW, None)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m hubforge.fast_start MODULE [ARGS...]")
    skip_iri_parsers()
    module = sys.argv.pop(1)
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
