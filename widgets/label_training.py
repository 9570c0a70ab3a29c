""" "Train a model" in the labeling widget (#34): the labeled items so far become a
``hubforge.automl.classify`` search (every trial a job, listed in the panel's Tuning group);
the widget follows it and links its report page when it ends. The search runs in the
hubforge service: closing the notebook or culling the server does not stop it."""

from __future__ import annotations

import os
import threading
from typing import Any

from hubforge import labeling

FOLLOW_EVERY = 5.0  # seconds between two looks at the search


def trainable(project: Any, labeled: int) -> bool:
    """Image or text classification with a few labels (classify() says if too few)."""
    return project.task in ("image-classification", "text-classification") and labeled >= 4


def report_url(name: str) -> str:
    """The report page through this server (JupyterHub's prefix of the user's server)."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")
    return f"{prefix}/hubforge/api/classifications/{name}/report"


def _trials_text(run: Any) -> str:
    trials = run.trials
    done = [t for t in trials if t.state in ("succeeded", "failed", "cancelled")]
    best = run.best
    said = f"{len(done)}/{len(trials)} trials done"
    if best is not None and best.objective is not None:
        said += f" · best validation accuracy {100 * best.objective:.1f} %"
    return said


class TrainsModels:
    """The widget side of "Train a model": ``training`` is synced to the browser."""

    train_trials = 6  # trials a press starts (LabelWidget(..., train_trials=N))

    def train_model(self) -> Any:
        """Start a classify() search on the project's labeled items; returns the run."""
        from hubforge import automl

        if (
            getattr(self, "_classification", None) is not None
            and self.training.get("state") == "running"
        ):
            self.status = f"A search is already running: {self._classification.name}"
            return self._classification
        self.wait()  # the labels made here are in Label Studio first
        try:
            run = automl.classify(self.project, max_trials=self.train_trials)
        except (ValueError, labeling.LabelingError) as e:  # too few labels, a bad project...
            self.training = {"state": "refused", "text": str(e)}
            return None
        self._classification = run
        self.training = {
            "name": run.name,
            "state": "running",
            "text": f"Training: the search {run.name} ({self.train_trials} trials, "
            "each a job; in the panel under Tuning)",
        }
        threading.Thread(target=self._follow, args=(run,), daemon=True).start()
        return run

    def _follow(self, run: Any) -> None:
        stop = threading.Event()
        while not stop.wait(FOLLOW_EVERY):
            try:
                state = run.state
                text = _trials_text(run)
            except Exception as e:  # the service away for a moment: keep following
                self.training = {**self.training, "text": f"Following the search: {e}"}
                continue
            if state == "running":
                self.training = {**self.training, "text": f"Training: {text}"}
                continue
            self.training = self._ended(run, state, text)
            return

    def _ended(self, run: Any, state: str, text: str) -> dict[str, Any]:
        ended = {"name": run.name, "state": state, "text": f"The search {state}: {text}"}
        if run.best is None:
            return ended
        try:
            report = run.report()
        except ValueError as e:
            return {**ended, "text": f"{ended['text']} ({e})"}
        return {
            **ended,
            "text": f"Best model: {100 * report.accuracy:.1f} % on the validation items",
            "report": report_url(run.name),
        }
