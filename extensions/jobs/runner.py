"""Runs a converted notebook (``python -m hubforge.jobs.runner SCRIPT``) with an IPython shell,
so ``get_ipython().run_line_magic(...)`` and ``!`` commands work as in the kernel."""

from __future__ import annotations

import json
import os
import sys


def tf_config_from_index() -> None:
    """On Kubernetes Indexed Jobs: TF_CONFIG from HUBFORGE_TF_HOSTS and JOB_COMPLETION_INDEX."""
    hosts = os.environ.get("HUBFORGE_TF_HOSTS")
    if hosts and "TF_CONFIG" not in os.environ:
        index = int(os.environ["JOB_COMPLETION_INDEX"])
        cluster = {"worker": hosts.split(",")}
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )


def main() -> None:
    tf_config_from_index()
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
