"""Runs a converted notebook (``python -m hubforge.jobs.runner SCRIPT``) with an IPython shell,
so ``get_ipython().run_line_magic(...)`` and ``!`` commands work as in the kernel."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import traceback

from hubforge import deferred_imports
from hubforge.quiet import filter_stderr

CELL_MARK = "# notebook cell "  # each cell of a converted notebook starts with it


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


def strategy_first(source: str) -> None:
    """A multi-worker job whose notebook uses hubforge.distribute.strategy() gets it made
    here, before the notebook's first line: TensorFlow's collective ops must be configured
    at program start, and notebooks build their data pipeline before asking for it."""
    from hubforge import distribute

    asks = re.search(r"\bstrategy\(\s*\)", source) and "hubforge" in source
    if asks and distribute.num_workers() > 1 and "MultiWorkerMirroredStrategy(" not in source:
        distribute.strategy()


def where_in_notebook(error: BaseException, path: str, source: str) -> str | None:
    """'notebook cell 3, line 2' for the deepest frame of the converted notebook in the
    error's traceback (each converted cell starts with a '# notebook cell N' line)."""
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    if not lines or not lines[-1]:
        return None
    script = source.splitlines()
    for number in range(lines[-1] - 1, -1, -1):
        if number < len(script) and script[number].startswith(CELL_MARK):
            cell = script[number].removeprefix(CELL_MARK).strip()
            return f"notebook cell {cell}, line {lines[-1] - number - 1}"
    return None


def record_error(error: BaseException, where: str | None = None) -> None:
    """The failing line of a Python error, for the supervisor (it restarts only what a
    restart can fix): replicas/<replica>.error.json in the job's folder."""
    job_dir, replica = os.environ.get("HUBFORGE_JOB_DIR"), os.environ.get("HUBFORGE_REPLICA")
    if not job_dir or not replica:
        return
    text = getattr(error, "job_error", None)  # an error that says it in one line of its own
    if not isinstance(text, str) or not text.strip():
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
    last = text.splitlines()[-1]
    last = f"{where}: {last}" if where else last
    record = {"error": last[:500], "attempt": os.environ.get("HUBFORGE_ATTEMPT")}
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
        if deferred_imports.loaded("matplotlib.pyplot"):  # (Keras imports it unused)
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
    deferred_imports.defer()  # what Keras imports unused: at first use, if the notebook uses it
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
        strategy_first(source)
        exec(compile(source, path, "exec"), namespace)
        figures.finish()
    except SystemExit as e:
        if e.code not in (None, 0):
            record_error(e)
        raise
    except Exception as e:  # recorded, then it propagates: exit non-zero
        where = where_in_notebook(e, path, source)
        record_error(e, where)
        if where:
            print(f"The job failed in {where} (the traceback follows):", file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
