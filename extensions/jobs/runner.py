"""Runs a converted notebook (``python -m hubforge.jobs.runner SCRIPT``) with an IPython shell,
so ``get_ipython().run_line_magic(...)`` and ``!`` commands work as in the kernel."""

from __future__ import annotations

import sys


def main() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    path = sys.argv[1]
    shell = InteractiveShell.instance()
    namespace = {"__name__": "__main__", "__file__": path, "get_ipython": shell.get_ipython}
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    exec(code, namespace)  # errors propagate: the worker exits non-zero


if __name__ == "__main__":
    main()
