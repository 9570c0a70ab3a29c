"""Runs a converted notebook (``python -m hubforge.jobs.runner SCRIPT``) with an IPython shell,
so ``get_ipython().run_line_magic(...)`` and ``!`` commands work as in the kernel."""

from __future__ import annotations

import sys


def main() -> None:
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        source = f.read()
    namespace = {"__name__": "__main__", "__file__": path}
    if "get_ipython()" in source:  # magics or `!` commands: start IPython only when needed
        from IPython.core.interactiveshell import InteractiveShell

        namespace["get_ipython"] = InteractiveShell.instance().get_ipython
    exec(compile(source, path, "exec"), namespace)  # errors propagate: exit non-zero


if __name__ == "__main__":
    main()
