"""Tuning runs (#34): a search over a notebook's parameters in which every trial is an
ordinary Hubforge job (its workers, GPUs, the queue), driven by keras-tuner's algorithms
(:mod:`hubforge.jobs.oracle`) from the hubforge service, never from a user's kernel.

A run lives in ``<root>/<owner>/<id>/``: ``run.json`` (written atomically: the trials, their
jobs and results), the notebook, and keras-tuner's own state. Each pass (the service's
periodic one) collects the results of trials whose jobs ended, then starts new trials while
fewer than ``parallel`` are active. A trial's job id is fixed before it is submitted, so a
service stopped at any point neither loses a trial nor runs one twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from .. import atomic
from .convert import parameters_of, to_script
from .errors import JobError, JobNotFound
from .oracle import OracleClient
from .search_space import (
    EPOCHS,
    better,
    check_hyperband,
    check_objective,
    check_search,
    check_space,
    hyperband_trials,
    objective_value,
)
from .spec import NAME, JobSpec
from .store import TERMINAL

RUN_ENDED = ("succeeded", "failed", "cancelled")
log = logging.getLogger(__name__)
MAX_SEARCHING = 4  # runs one user may have searching at once (each pass reads each of them)


class TrialJobs(Protocol):
    """What a run needs of the jobs: the service's submit (quotas, the queue) and reads."""

    def submit(self, owner: str, spec: JobSpec, script: str, job_id: str) -> dict[str, Any]: ...
    def get(self, owner: str, job_id: str) -> dict[str, Any]: ...
    def progress(self, owner: str, job_id: str) -> dict[str, Any]: ...
    def cancel(self, owner: str, job_id: str) -> dict[str, Any]: ...


class Waiting(Exception):
    """A trial cannot be submitted now (the owner's quota); the run tries again later."""


class Tunings:
    """Every user's tuning runs on this workbench."""

    def __init__(
        self,
        root: str | Path,
        jobs: TrialJobs,
        oracle: OracleClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.jobs = jobs
        self.oracle = oracle or OracleClient()
        self.clock = clock
        self.lock = threading.Lock()  # one pass or change at a time

    # -- requests ------------------------------------------------------------------------
    def create(
        self,
        owner: str,
        notebook: dict[str, Any],
        space: Any,
        objective: Any,
        max_trials: Any = 10,
        parallel: Any = 2,
        algorithm: Any = "random",
        spec: dict[str, Any] | None = None,
        name: str | None = None,
        max_epochs: Any = None,
        factor: Any = 3,
    ) -> dict[str, Any]:
        """Check the request (JobError saying what to change) and record the run; its first
        trials start on the next pass. Hyperband (``max_epochs``, ``factor``) sets each
        trial's ``epochs`` parameter."""
        dims, goal, name, base, defaults = self._checked(notebook, space, objective, spec, name)
        check_search(algorithm, max_trials, parallel)
        if algorithm == "hyperband":
            check_hyperband(max_epochs, factor, dims, defaults)
            max_trials = min(max_trials, hyperband_trials(max_epochs, factor))
        else:
            max_epochs = factor = None
        self._room_for_one_more(owner)
        run_id = f"{name}-{secrets.token_hex(3)}"
        folder = self._folder(owner, run_id)
        folder.mkdir(parents=True, mode=0o700)
        atomic.write_text(folder / "notebook.ipynb", json.dumps(notebook))
        now = self.clock()
        record = {
            "id": run_id,
            "owner": owner,
            "name": name,
            "state": "running",
            "reason": "",
            "created": now,
            "updated": now,
            "algorithm": algorithm,
            "objective": goal,
            "space": dims,
            "max_trials": max_trials,
            "max_epochs": max_epochs,
            "factor": factor,
            "parallel": parallel,
            "seed": secrets.randbelow(10**6) + 1,
            "spec": base,
            "search_done": False,
            "trials": [],
            "best": None,
        }
        self._save(record)
        return record

    @staticmethod
    def _checked(
        notebook: Any, space: Any, objective: Any, spec: dict[str, Any] | None, name: Any
    ) -> tuple[dict[str, Any], dict[str, str], str, dict[str, Any], dict[str, Any]]:
        """(the space, the objective, the run's name, its trials' spec, the notebook's
        parameters) of a request."""
        import nbformat

        try:
            nb = nbformat.reads(json.dumps(notebook), as_version=4)  # sources as lines too
            nbformat.validate(nb)
        except Exception as e:
            raise JobError(
                f"'notebook' is not a notebook ({type(e).__name__}): send its JSON"
            ) from None
        defaults = parameters_of(nb)
        dims = check_space(space, defaults)
        goal = check_objective(objective)
        name = name or "tune"
        if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > 30:
            raise JobError(f"name={name!r}: 1-30 lowercase letters, digits or '-'")
        base = {k: v for k, v in (spec or {}).items() if k != "name"}
        JobSpec.from_dict({**base, "name": f"{name}-t0"}).validate()  # each trial's job
        return dims, goal, name, base, defaults

    def _room_for_one_more(self, owner: str) -> None:
        searching = [r["id"] for r in self.list(owner) if r["state"] == "running"]
        if len(searching) >= MAX_SEARCHING:
            raise JobError(
                f"{owner} has {len(searching)} tuning runs searching ({', '.join(searching)}), "
                f"the most at once: wait for one to end, or cancel one "
                f"(`hubforge job tuning ID --cancel`)",
                429,
            )

    def list(self, owner: str) -> list[dict[str, Any]]:
        base = self.root / quote(owner, safe="")
        if not base.is_dir():
            return []
        found = []
        for folder in sorted(base.iterdir()):
            try:
                found.append(self._load(owner, folder.name))
            except JobNotFound:
                continue
        return sorted(found, key=lambda r: r["created"])

    def get(self, owner: str, run_id: str) -> dict[str, Any]:
        return self._load(owner, run_id)

    def cancel(self, owner: str, run_id: str) -> dict[str, Any]:
        """Stop the search and every trial still running or waiting."""
        with self.lock:
            record = self._load(owner, run_id)
            if record["state"] in RUN_ENDED:
                return record
            for trial in record["trials"]:
                if trial["state"] == "running":
                    with contextlib.suppress(JobError, JobNotFound):  # it ended meanwhile
                        self.jobs.cancel(owner, trial["job"])
                if trial["state"] in ("running", "pending"):
                    trial["state"] = "cancelled"
            record.update(state="cancelled", reason="cancelled by its owner")
            self._save(record)
            return record

    # -- the periodic pass ---------------------------------------------------------------
    def active(self) -> list[tuple[str, str]]:
        """(owner, id) of every run still searching."""
        found = []
        if not self.root.is_dir():
            return found
        for owner_dir in self.root.iterdir():
            for folder in owner_dir.iterdir() if owner_dir.is_dir() else []:
                try:
                    record = json.loads((folder / "run.json").read_text())
                except (OSError, ValueError):
                    continue
                if record.get("state") == "running":
                    found.append((record["owner"], record["id"]))
        return found

    def run_pass(self) -> None:
        for owner, run_id in self.active():
            try:
                self.advance(owner, run_id)
            except JobError as e:  # this run's search failed; the others go on
                self._fail(owner, run_id, str(e))
            except Exception:  # a fault in one run (its owner's files...) never stops the others'
                log.exception("Tuning run %s of %s: this pass skipped it", run_id, owner)

    def advance(self, owner: str, run_id: str) -> dict[str, Any]:
        """Collect ended trials, start new ones up to ``parallel``, end the run when the
        search is done and no trial is left."""
        with self.lock:
            record = self._load(owner, run_id)
            if record["state"] != "running":
                return record
            self._collect(record)
            self._start_trials(record)
            live = [t for t in record["trials"] if t["state"] in ("running", "pending")]
            if record["search_done"] and not live:
                self._finish(record)
            self._save(record)
            return record

    def _collect(self, record: dict[str, Any]) -> None:
        owner = record["owner"]
        for trial in record["trials"]:
            if trial["state"] != "running":
                continue
            try:
                job = self.jobs.get(owner, trial["job"])
                trial.pop("missing", None)
            except JobNotFound:  # gone, or its record was being replaced: three passes tell
                trial["missing"] = trial.get("missing", 0) + 1
                if trial["missing"] < 3:
                    continue
                job = {"state": "failed", "reason": "its job is gone"}
            if job["state"] not in TERMINAL:
                continue
            value, message = None, job.get("reason") or f"the job {job['state']}"
            if job["state"] == "succeeded":
                value = objective_value(
                    self.jobs.progress(owner, trial["job"]), record["objective"]
                )
                if value is None:
                    message = (
                        f"the job reported no {record['objective']['name']!r}: name a metric of "
                        "its Keras history, or call hubforge.distribute.report"
                    )
            self._ask(record, "result", trial=trial["id"], value=value, message=message)
            trial.update(
                state="succeeded" if value is not None else "failed",
                objective=value,
                message="" if value is not None else message,
                ended=self.clock(),
            )
            self._update_best(record)

    def _start_trials(self, record: dict[str, Any]) -> None:
        """Submit the trials given out but not started yet, then ask for new ones while
        fewer than ``parallel`` are active."""

        def active() -> int:
            return sum(t["state"] in ("running", "pending") for t in record["trials"])

        try:
            for trial in [t for t in record["trials"] if t["state"] == "pending"]:
                self._submit(record, trial)
            while active() < record["parallel"] and not record["search_done"]:
                if len(record["trials"]) >= record["max_trials"]:
                    record["search_done"] = True
                    break
                answer = self._ask(record, "next")
                if answer.get("done"):
                    record["search_done"] = True
                elif answer.get("wait"):
                    return
                else:
                    trial = self._new_trial(record, answer)
                    record["trials"].append(trial)
                    self._save(record)  # the job's id is kept before the job exists
                    self._submit(record, trial)
        except Waiting as e:
            record["reason"] = str(e)
            return
        record["reason"] = ""

    @staticmethod
    def _new_trial(record: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        params = dict(answer["params"])
        trial = {
            "id": answer["trial"],
            "job": f"{record['id']}-t{answer['trial']}",
            "params": params,
            "state": "pending",
            "objective": None,
            "message": "",
        }
        if "schedule" in answer:  # Hyperband: this trial's epochs, and the trial it takes on
            params[EPOCHS] = answer["schedule"]["epochs"]
            trial["schedule"] = answer["schedule"]
        return trial

    def _submit(self, record: dict[str, Any], trial: dict[str, Any]) -> None:
        owner = record["owner"]
        try:
            self.jobs.get(owner, trial["job"])  # submitted before the service stopped
        except JobNotFound:
            import nbformat

            nb = (self._folder(owner, record["id"]) / "notebook.ipynb").read_text()
            script = to_script(nbformat.reads(nb, as_version=4), trial["params"])
            if trial.get("schedule"):
                script = _hyperband_prologue(record, trial["schedule"]) + script
            script = _hparams_prologue(trial["params"]) + script
            spec = JobSpec.from_dict({**record["spec"], "name": f"{record['name']}-t{trial['id']}"})
            spec.params = dict(trial["params"])
            try:
                self.jobs.submit(owner, spec, script, trial["job"])
            except Waiting:
                raise
            except (JobError, OSError) as e:  # refused, or the owner's files in the way
                self._ask(record, "result", trial=trial["id"], value=None, message=str(e))
                trial.update(state="failed", message=f"not started: {e}")
                return
        trial.update(state="running", started=self.clock())

    def _finish(self, record: dict[str, Any]) -> None:
        self._update_best(record)
        if record["best"] is not None:
            record.update(state="succeeded", reason="")
            return
        failed = [t for t in record["trials"] if t["state"] == "failed"]
        why = failed[0]["message"] if failed else "no trial ran"
        record.update(state="failed", reason=f"no trial gave a result: {why}")

    def _update_best(self, record: dict[str, Any]) -> None:
        direction = record["objective"]["direction"]
        best = None
        for trial in record["trials"]:
            value = trial["objective"] if trial["state"] == "succeeded" else None
            if value is not None and (best is None or better(value, best["objective"], direction)):
                best = trial
        record["best"] = best["id"] if best else None

    def _ask(self, record: dict[str, Any], op: str, **fields: Any) -> dict[str, Any]:
        running = [t["id"] for t in record["trials"] if t["state"] in ("running", "pending")]
        keys = ("algorithm", "space", "objective", "max_trials", "seed", "max_epochs", "factor")
        search = {k: record.get(k) for k in keys}
        folder = self._folder(record["owner"], record["id"]) / "search"
        return self.oracle.ask(
            {"op": op, "dir": str(folder), "search": search, "running": running, **fields}
        )

    def _fail(self, owner: str, run_id: str, why: str) -> None:
        with self.lock:
            record = self._load(owner, run_id)
            record.update(state="failed", reason=why)
            self._save(record)

    # -- state on disk -------------------------------------------------------------------
    def _folder(self, owner: str, run_id: str) -> Path:
        if not isinstance(run_id, str) or not NAME.fullmatch(run_id):
            raise JobNotFound(f"No tuning run {run_id!r} for {owner}")
        return self.root / quote(owner, safe="") / run_id

    def _load(self, owner: str, run_id: str) -> dict[str, Any]:
        try:
            record = json.loads((self._folder(owner, run_id) / "run.json").read_text())
        except (OSError, ValueError):
            raise JobNotFound(f"No tuning run {run_id!r} for {owner}") from None
        if record.get("owner") != owner:
            raise JobNotFound(f"No tuning run {run_id!r} for {owner}")
        return record

    def _save(self, record: dict[str, Any]) -> None:
        record["updated"] = self.clock()
        atomic.write_json(self._folder(record["owner"], record["id"]) / "run.json", record)


def _hparams_prologue(params: dict[str, Any]) -> str:
    """The trial's first line: its parameters for TensorBoard's HParams dashboard."""
    return f"import hubforge.hparams\nhubforge.hparams.record_trial({params!r})\n"


def _hyperband_prologue(record: dict[str, Any], schedule: dict[str, Any]) -> str:
    """The first lines of a Hyperband trial's script: its Keras backup is kept at the end
    (a later round may take it further), and a trial that goes on from an earlier one starts
    from that trial's backup (``hubforge.distribute.callbacks()`` reads both)."""
    lines = [
        "import os as _hubforge_os",
        '_hubforge_os.environ["HUBFORGE_KEEP_BACKUP"] = "1"',
    ]
    if schedule.get("continues"):
        parent = f"{record['id']}-t{schedule['continues']}"
        lines.append(f'_hubforge_os.environ["HUBFORGE_WARM_START"] = "{parent}"')
    return "\n".join(lines) + "\n"


class DirectJobs:
    """A job backend used as it is (no quotas, no queue): the runs of a script without a
    hub, and tests."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def submit(self, owner: str, spec: JobSpec, script: str, job_id: str) -> dict[str, Any]:
        return self.backend.submit(owner, spec, script, job_id=job_id)

    def get(self, owner: str, job_id: str) -> dict[str, Any]:
        return self.backend.get(owner, job_id)

    def progress(self, owner: str, job_id: str) -> dict[str, Any]:
        return self.backend.progress(owner, job_id)

    def cancel(self, owner: str, job_id: str) -> dict[str, Any]:
        return self.backend.cancel(owner, job_id)
