"""Runs a converted notebook (``python -m hubforge.jobs.runner SCRIPT``) with an IPython shell,
so ``get_ipython().run_line_magic(...)`` and ``!`` commands work as in the kernel."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback

from hubforge.quiet import filter_stderr


def one_task_needs_no_cluster() -> None:
    """A one-worker job runs as the kernel does: without a TF_CONFIG for a cluster of one
    (a strategy made mid-notebook would otherwise start collective ops too late)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return
    try:
        cluster = json.loads(raw).get("cluster", {})
    except ValueError:
        return
    if sum(len(hosts) for hosts in cluster.values()) == 1:
        del os.environ["TF_CONFIG"]


def record_error(error: BaseException) -> None:
    """The failing line of a Python error, for the supervisor (it restarts only what a
    restart can fix): replicas/<replica>.error.json in the job's folder."""
    job_dir, replica = os.environ.get("HUBFORGE_JOB_DIR"), os.environ.get("HUBFORGE_REPLICA")
    if not job_dir or not replica:
        return
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    record = {"error": text.splitlines()[-1][:500], "attempt": os.environ.get("HUBFORGE_ATTEMPT")}
    path = os.path.join(job_dir, "replicas", f"{replica}.error.json")
    with contextlib.suppress(OSError):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)


FIGURES = "figures"  # <job>/figures/figure-<n>.png: what the job drew, shown with the job


class Figures:
    """Headless plotting in a job: ``plt.show()`` saves each open figure as a PNG in the job's
    folder (on the chief) and closes it, as the inline backend shows and closes in a kernel;
    figures still open when the script ends are saved too."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.count = 0

    def install(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        @functools.wraps(plt.show)  # pyplot sets attributes on show: a function, not a method
        def show(*args: object, **kwargs: object) -> None:
            self.show()

        plt.show = show

    def show(self) -> None:
        import matplotlib.pyplot as plt

        for number in plt.get_fignums():
            self.save(plt.figure(number))
        plt.close("all")

    def save(self, figure) -> None:
        if not self.folder:
            return
        os.makedirs(self.folder, exist_ok=True)
        self.count += 1
        figure.savefig(os.path.join(self.folder, f"figure-{self.count}.png"), dpi=100)

    def finish(self) -> None:
        if "matplotlib.pyplot" in sys.modules:
            self.show()


def _figures_folder() -> str | None:
    job_dir = os.environ.get("HUBFORGE_JOB_DIR")
    chief = os.environ.get("HUBFORGE_REPLICA", "worker-0") == "worker-0"
    return os.path.join(job_dir, FIGURES) if job_dir and chief else None


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
    job_dir, replica = os.environ.get("HUBFORGE_JOB_DIR"), os.environ.get("HUBFORGE_REPLICA")
    if job_dir and replica:  # TensorFlow's CPU start-up noise: in a debug log, not the log
        filter_stderr(os.path.join(job_dir, "replicas", f"{replica}.debug.log"))
    os.environ.setdefault("MPLBACKEND", "Agg")  # no display in a job, whatever draws
    tf_config_from_index()
    one_task_needs_no_cluster()
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        source = f.read()
    namespace = {"__name__": "__main__", "__file__": path}
    figures = Figures(_figures_folder())
    if "matplotlib" in source or "seaborn" in source or "pandas" in source:
        figures.install()  # before the script picks a backend
    if "get_ipython()" in source:  # magics or `!` commands: start IPython only when needed
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        # `%matplotlib inline` and friends: figures are already saved headless (above)
        shell.register_magic_function(lambda line="": None, "line", "matplotlib")
        namespace["get_ipython"] = shell.get_ipython
    try:
        exec(compile(source, path, "exec"), namespace)
        figures.finish()
    except SystemExit as e:
        if e.code not in (None, 0):
            record_error(e)
        raise
    except Exception as e:  # recorded, then it propagates: exit non-zero
        record_error(e)
        raise


if __name__ == "__main__":
    main()
