"""``hubforge.jobs.tune``: search a notebook's parameters, every trial a job (#34).

Inside a user's server the hubforge service runs the search (it goes on when the kernel
stops); with no hub around, ``wait()`` drives it from this process with the local backend.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

from ..client import ServiceClient
from .api import Job, _inside_home, _slug, current_user, data_root, default_backend
from .convert import check_params, parameters_of, read_notebook
from .errors import JobError
from .remote import call_service
from .search_space import check_space

RUN_ENDED = ("succeeded", "failed", "cancelled")


class Trial:
    """One set of parameters tried: ``params``, ``objective`` (None until it gave one),
    ``state`` (pending, running, succeeded, failed, cancelled) and its ``job``."""

    def __init__(self, record: dict[str, Any], tuning: Tuning):
        self._record = record
        self._tuning = tuning

    def __repr__(self) -> str:
        return f"<Trial {self.id} {self.state} {self.params} objective={self.objective}>"

    id = property(lambda self: self._record["id"])
    params = property(lambda self: dict(self._record["params"]))
    objective = property(lambda self: self._record.get("objective"))
    state = property(lambda self: self._record["state"])
    message = property(lambda self: self._record.get("message", ""))

    @property
    def job(self) -> Job | None:
        """The trial's job (None before it was submitted)."""
        if self.state == "pending":
            return None
        backend = self._tuning._runs.jobs
        return Job(backend.get(current_user(), self._record["job"]), backend)


class Tuning:
    """A handle on one tuning run; every property reads the current state."""

    def __init__(self, record: dict[str, Any], runs: Any):
        self._record = record
        self._runs = runs

    def __repr__(self) -> str:
        return f"<Tuning {self.id} {self._record['state']} {len(self._record['trials'])} trials>"

    id = property(lambda self: self._record["id"])
    record = property(lambda self: dict(self._record))

    def refresh(self) -> Tuning:
        self._record = self._runs.get(self.id)
        return self

    @property
    def state(self) -> str:
        return self.refresh()._record["state"]

    @property
    def reason(self) -> str:
        return self._record.get("reason", "")

    @property
    def trials(self) -> list[Trial]:
        return [Trial(t, self) for t in self.refresh()._record["trials"]]

    @property
    def best(self) -> Trial | None:
        """The trial with the best objective so far (None before any gave one)."""
        best = self.refresh()._record.get("best")
        return next((t for t in self.trials if t.id == best), None)

    def wait(self, timeout: float | None = None, poll: float = 1.0) -> Tuning:
        """Block until the search ends (every trial done, or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (state := self.state) not in RUN_ENDED:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Tuning {self.id} still {state} after {timeout}s")
            time.sleep(poll)
        return self

    def cancel(self) -> Tuning:
        self._record = self._runs.cancel(self.id)
        return self


class _ServiceRuns:
    """Runs kept and driven by the hubforge service."""

    def __init__(self, client: ServiceClient):
        self.client = client
        self.jobs = default_backend()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return call_service(self.client, method, path, errors=(400, 403, 409, 413), **kwargs)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "tunings", json=body)

    def get(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"tunings/{run_id}")

    def list(self) -> list[dict[str, Any]]:
        return self._call("GET", "tunings")["tunings"]

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"tunings/{run_id}")


class _LocalRuns:
    """Runs of a script with no hub: this process drives them while it asks about them."""

    def __init__(self) -> None:
        from .local import LocalJobBackend
        from .tuning import DirectJobs, Tunings

        self.jobs = LocalJobBackend(data_root())
        self.engine = Tunings(data_root() / "tunings", DirectJobs(self.jobs))
        self.owner = current_user()
        atexit.register(self.engine.oracle.close)  # its search process ends with this one

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        return self.engine.create(
            self.owner,
            body["notebook"],
            body["space"],
            body["objective"],
            body["max_trials"],
            body["parallel"],
            body["algorithm"],
            spec,
            body["name"],
            body.get("max_epochs"),
            body.get("factor", 3),
        )

    def get(self, run_id: str) -> dict[str, Any]:
        record = self.engine.advance(self.owner, run_id)
        if record["state"] in RUN_ENDED:
            self.engine.oracle.close()  # started again if asked again
        return record

    def list(self) -> list[dict[str, Any]]:
        return self.engine.list(self.owner)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self.engine.cancel(self.owner, run_id)


def _runs() -> Any:
    return _ServiceRuns(ServiceClient()) if ServiceClient.available() else _LocalRuns()


def tune(
    notebook: str | os.PathLike,
    space: dict[str, Any],
    objective: str | dict[str, str],
    max_trials: int = 10,
    parallel: int = 2,
    algorithm: str = "random",
    workers: int = 1,
    gpus_per_worker: int = 0,
    name: str | None = None,
    priority: str = "normal",
    max_epochs: int | None = None,
    factor: int = 3,
) -> Tuning:
    """Search the notebook's ``parameters`` cell: each parameter in ``space`` gets a range
    (``{"min": 1e-4, "max": 1e-1, "log": True}``; ints when both ends are) or a list of
    values; ``objective`` is a metric the notebook reports (a Keras history metric by name,
    best epoch, or one given to ``hubforge.distribute.report``), maximised unless its name
    ends in loss/error, or ``{"name": ..., "direction": "min"}``. ``max_trials`` jobs run,
    ``parallel`` at a time, chosen by keras-tuner's ``algorithm`` ("random", "bayesian",
    "hyperband"). Hyperband sets the notebook's ``epochs`` parameter: many trials train a
    few epochs, the best 1 in ``factor`` of them go on with ``factor`` times more, up to
    ``max_epochs``. Returns at once; ``.wait()``, ``.trials`` and ``.best`` follow it."""
    path = _inside_home(Path(notebook))
    if path.suffix != ".ipynb":
        raise JobError(f"{path.name}: tune a notebook (.ipynb) with a cell tagged 'parameters'")
    nb = read_notebook(path)
    defaults = parameters_of(nb)
    check_space(space, defaults)  # here first: the error names the cell's parameters
    for key, value in space.items():
        if isinstance(value, list) and value:
            check_params(defaults, {key: value[0]})
    body = {
        "notebook": json.loads(json.dumps(nb)),
        "space": space,
        "objective": objective,
        "max_trials": max_trials,
        "parallel": parallel,
        "algorithm": algorithm,
        "max_epochs": max_epochs,
        "factor": factor,
        "name": name or _slug(f"tune-{path.stem}")[:30].strip("-"),
        "spec": {
            "workers": workers,
            "gpus_per_worker": gpus_per_worker,
            "priority": priority,
            "source": str(path),
        },
    }
    runs = _runs()
    return Tuning(runs.create(body), runs)


def get_tuning(run_id: str) -> Tuning:
    runs = _runs()
    return Tuning(runs.get(run_id), runs)


def list_tunings() -> list[Tuning]:
    runs = _runs()
    return [Tuning(r, runs) for r in runs.list()]
