"""A scheduled run's job (#35): the notebook as it was scheduled, run cell by cell in a
kernel with nbclient (as papermill does), its parameters in a cell after the one tagged
``parameters``. The chief keeps the executed notebook in the job's folder
(``executed.ipynb``: outputs, plots and the error in place), written again after every cell,
so a run in progress shows how far it got.

The kernel's channels are Unix sockets in the job's private folder (never TCP ports on a
loopback every account shares), as a user's server's kernels are."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager

from ..atomic import write_text
from ..channels import KERNELS, PrivateChannels, private_dir
from ..jobs.convert import PARAMETERS_TAG, check_params, parameters_of

EXECUTED = "executed.ipynb"
INJECTED_TAG = "injected-parameters"  # papermill's name for the cell it adds


class CellFailed(Exception):
    """A cell of the notebook raised: ``job_error`` is what the run's record and its
    notification say (the cell and the error's last line)."""

    def __init__(self, job_error: str):
        super().__init__(job_error)
        self.job_error = job_error


class IpcKernelManager(PrivateChannels, AsyncKernelManager):
    """nbclient's kernel, over Unix sockets in this process's private folder."""


def with_params(nb: nbformat.NotebookNode, params: dict[str, Any]) -> tuple[Any, int | None]:
    """A copy of ``nb`` with a cell setting ``params`` after its ``parameters`` cell (at the
    top when it has none) and the new cell's index (None when there are no params)."""
    defaults = parameters_of(nb)
    check_params(defaults, params)
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    if not params:
        return nb, None
    lines = [
        # 3 for a parameter whose default is 0.5: 3.0, as the notebook would have it
        f"{name} = {_literal(_as_default(value, defaults.get(name)))}"
        for name, value in params.items()
    ]
    cell = nbformat.v4.new_code_cell(
        "# Parameters of this run\n" + "\n".join(lines), metadata={"tags": [INJECTED_TAG]}
    )
    tagged = [
        i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    at = tagged[0] + 1 if tagged else 0
    nb.cells.insert(at, cell)
    return nb, at


def _as_default(value: Any, default: Any) -> Any:
    whole = isinstance(value, int) and not isinstance(value, bool)
    return float(value) if whole and isinstance(default, float) else value


def _literal(value: Any) -> str:
    """Python source for a JSON value (NaN and infinities too, which Python's JSON allows)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:  # a non-finite number somewhere in it
        return f"__import__('json').loads({json.dumps(value)!r})"
    return repr(value)


def cell_number(index: int, injected: int | None) -> str:
    """'notebook cell N' as the owner counts the cells (the injected one left out)."""
    if injected is not None and index == injected:
        return "the run's parameters cell"
    if injected is not None and index > injected:
        index -= 1
    return f"notebook cell {index + 1}"


class Execution:
    """One run of a notebook; ``out``: where the executed notebook goes (None: nowhere)."""

    def __init__(self, nb: Any, injected: int | None, out: Path | None, cwd: str):
        self.nb, self.injected, self.out, self.cwd = nb, injected, out, cwd
        self.failed: str | None = None

    def save(self, **_: Any) -> None:
        if self.out is not None:
            write_text(self.out, nbformat.writes(self.nb))

    def cell_error(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        content = (execute_reply or {}).get("content", {})
        last = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}".rstrip(": ")
        last = " ".join(last.split())  # one line: what the run's reason and e-mail show
        self.failed = f"{cell_number(cell_index, self.injected)}: {last}"

    def run(self) -> None:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        folder = private_dir() / KERNELS
        km = IpcKernelManager(
            kernel_name="python3",
            transport="ipc",
            connection_file=str(folder / f"kernel-{os.urandom(6).hex()}.json"),
        )
        client = NotebookClient(
            self.nb,
            km=km,
            timeout=None,
            kernel_name="python3",
            resources={"metadata": {"path": self.cwd}},
            on_cell_executed=self.save,
            on_cell_error=self.cell_error,
        )
        try:
            client.execute()
        except CellExecutionError:
            raise CellFailed(self.failed or "a cell failed") from None
        finally:
            self.save()


def run(notebook: str, params: dict[str, Any] | None = None) -> None:
    """Run ``notebook`` (its JSON) with ``params``; on the chief of a job, its executed copy
    goes to the job's folder. Raises :class:`CellFailed` when a cell raises."""
    nb, injected = with_params(nbformat.reads(notebook, as_version=4), dict(params or {}))
    job_dir = os.environ.get("HUBFORGE_JOB_DIR")
    chief = os.environ.get("HUBFORGE_REPLICA", "worker-0") == "worker-0"
    out = Path(job_dir) / EXECUTED if job_dir and chief else None
    Execution(nb, injected, out, os.getcwd()).run()


def job_script(notebook: dict[str, Any], params: dict[str, Any], title: str) -> str:
    """The script of a scheduled run's job (run by hubforge.jobs.runner)."""
    return (
        f"# {title}: the notebook as it was scheduled, run with nbclient\n"
        "import json\n\nfrom hubforge.schedules.executor import run\n\n"
        f"run({json.dumps(notebook)!r}, json.loads({json.dumps(params)!r}))\n"
    )
