"""keras-tuner's search algorithms (its oracles), asked by the hubforge service in a process
of their own: keras-tuner loads TensorFlow (seconds, hundreds of MB), which the service
itself never does.

The worker keeps nothing between requests: each one rebuilds the run's oracle from its
folder (keras-tuner's own ``oracle.json`` and ``trial_*/trial.json``), acts, and saves; so a
worker, the service or the machine may stop at any time and the search goes on from disk.
Protocol: one JSON object per line on stdin, one answer per line on stdout::

    {"op": "next", "dir": D, "search": S, "running": [ids]} -> {"trial": id, "params": {...}}
                                                              | {"done": true} | {"wait": true}
    {"op": "result", "dir": D, "search": S, "running": [ids], "trial": id, "value": v|null,
     "message": "..."}                                        -> {"ok": true}

``search``: {"algorithm", "space" (normalised, see search_space), "objective", "max_trials",
"seed", and for Hyperband "max_epochs" and "factor"}; a Hyperband trial's answer also has
"schedule": {"epochs", "bracket", "round", "continues" (the trial it takes further, or
null)}; ``running``: the trials whose jobs the service knows to be live (keras-tuner would
otherwise send them to be run again after a reload).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .. import deferred_imports
from .errors import JobError


def _hyperparameters(space: dict[str, Any]) -> Any:
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for name, d in space.items():
        sampling = "log" if d.get("log") else "linear"
        if d["type"] == "choice":
            hp.Choice(name, d["values"])
        elif d["type"] == "int":
            hp.Int(name, d["min"], d["max"], step=d.get("step") or 1, sampling=sampling)
        else:
            hp.Float(name, d["min"], d["max"], step=d.get("step"), sampling=sampling)
    return hp


def _oracle(folder: str, search: dict[str, Any], running: list[str]) -> Any:
    import keras_tuner as kt

    kinds = {
        "random": kt.oracles.RandomSearchOracle,
        "bayesian": kt.oracles.BayesianOptimizationOracle,
        "hyperband": kt.oracles.HyperbandOracle,
    }
    objective = search["objective"]
    size = {"max_trials": search["max_trials"]}
    if search["algorithm"] == "hyperband":  # its brackets say how many trials (the service caps)
        size = {"max_epochs": search["max_epochs"], "factor": search["factor"]}
    oracle = kinds[search["algorithm"]](
        objective=kt.Objective(objective["name"], objective["direction"]),
        hyperparameters=_hyperparameters(search["space"]),
        seed=search["seed"],
        max_consecutive_failed_trials=search["max_trials"],  # the service decides when to stop
        **size,
    )
    oracle.verbose = 0
    oracle._set_project_dir(folder, "oracle")
    if (Path(folder) / "oracle" / "oracle.json").exists():
        oracle.reload()
        # reload() sends the trials that were running to be run again: those still live stay
        ended = set(oracle.end_order)
        oracle._retry_queue = [
            t for t in oracle._retry_queue if t not in running and t not in ended
        ]
        for trial_id in running:
            if trial_id in oracle.trials:
                oracle.trials[trial_id].status = "RUNNING"
                oracle.ongoing_trials[f"job-{trial_id}"] = oracle.trials[trial_id]
    return oracle


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    oracle = _oracle(request["dir"], request["search"], request.get("running") or [])
    if request["op"] == "next":
        trial = oracle.create_trial(f"next-{len(oracle.trials)}-{os.getpid()}")
        if trial.status == "STOPPED":
            return {"done": True}
        if trial.status != "RUNNING":
            return {"wait": True}
        # the trial goes on under the id the service will name it by
        oracle.ongoing_trials = {
            (f"job-{t.trial_id}" if t.trial_id == trial.trial_id else k): t
            for k, t in oracle.ongoing_trials.items()
        }
        oracle.save()
        return _given(trial.trial_id, dict(trial.hyperparameters.values))
    if request["op"] == "result":
        trial = oracle.trials[request["trial"]]
        name = request["search"]["objective"]["name"]
        if request.get("value") is not None:
            oracle.update_trial(trial.trial_id, {name: float(request["value"])})
            trial.status = "COMPLETED"
        else:
            trial.status = "FAILED"
            trial.message = request.get("message") or "the job failed"
        oracle.end_trial(trial)
        oracle.save()  # end_trial saved before it let go of the trial
        return {"ok": True}
    raise ValueError(f"unknown op {request['op']!r}")


def _given(trial_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """A new trial's answer: the notebook's parameters, and Hyperband's schedule for it
    (keras-tuner's ``tuner/*`` values) apart."""
    params = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    answer: dict[str, Any] = {"trial": trial_id, "params": params}
    if "tuner/epochs" in values:
        answer["schedule"] = {
            "epochs": values["tuner/epochs"],
            "bracket": values["tuner/bracket"],
            "round": values["tuner/round"],
            "continues": values.get("tuner/trial_id"),
        }
    return answer


def main() -> None:
    """The worker: answer requests until stdin closes. Answers go to the real stdout;
    whatever keras-tuner and TensorFlow print goes to stderr."""
    deferred_imports.defer()  # keras-tuner imports Keras: without what Keras imports unused
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            answer = _serve(json.loads(line))
        except Exception as e:  # one bad request does not end the worker
            answer = {"error": f"{type(e).__name__}: {e}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class OracleClient:
    """The service's side: one worker, started on the first request and again if it died;
    requests one at a time."""

    def __init__(self, timeout: float = 120) -> None:
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for _attempt in (1, 2):
                proc = self._worker()
                try:
                    proc.stdin.write(json.dumps(request) + "\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except OSError:
                    line = ""
                if line:
                    answer = json.loads(line)
                    if "error" in answer:
                        raise JobError(f"the search algorithm failed: {answer['error']}")
                    return answer
                self.close()  # it died: a new one reads the same folder
            raise JobError("the search process stopped twice in a row; see the service's log")

    def _worker(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
            env.pop("JUPYTERHUB_API_TOKEN", None)  # it needs no credential of the service's
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hubforge.jobs.oracle"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd="/",
            )
        return self._proc

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()
            self._proc = None


if __name__ == "__main__":
    main()
