"""The Train widget: a form over ``hubforge.jobs.submit`` and a live view of the job.

Every button has a Python method (``train()``, ``cancel()``, ``show_logs()``, ``refresh()``),
so scripts and tests drive it exactly as a click does.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import ipywidgets as w

from hubforge import jobs
from hubforge.jobs.convert import parameters_of, read_notebook
from hubforge.jobs.display import progress_line
from hubforge.jobs.store import TERMINAL

from .charts import line_chart

STATE_COLORS = {
    "succeeded": "green",
    "failed": "#c00",
    "cancelled": "#777",
    "running": "#06c",
    "restarting": "#c60",
    "pending": "#777",
    "queued": "#a60",
}


def current_notebook() -> str | None:
    """The notebook this kernel belongs to, as Jupyter Server tells kernels."""
    return os.environ.get("JPY_SESSION_NAME")


class TrainWidget(w.VBox):
    def __init__(
        self,
        notebook: str | os.PathLike | None = None,
        workers: int = 1,
        gpus_per_worker: int = 0,
        backend: Any = None,
        poll_interval: float = 1.0,
    ):
        self.notebook = Path(notebook or current_notebook() or "")
        self.backend = backend
        self.poll_interval = poll_interval
        self.job: jobs.Job | None = None
        self._stop = threading.Event()
        self._build_form(workers, gpus_per_worker)
        self._build_view()
        super().__init__(
            [
                self.form,
                self.buttons,
                self.status,
                self.progress_bar,
                self.warnings,
                self.replicas,
                self.chart,
                self.figures,
                self.logs_bar,
                self.logs,
                self.board,
            ],
            layout={"width": "100%"},
        )
        self.add_class("hubforge-train")

    # -- construction -------------------------------------------------------------------
    def _build_form(self, workers: int, gpus: int) -> None:
        style = {"description_width": "110px"}
        self.workers = w.BoundedIntText(workers, min=1, max=64, description="Workers", style=style)
        self.gpus = w.BoundedIntText(gpus, min=0, max=16, description="GPUs / worker", style=style)
        self.params: dict[str, w.Text] = {}
        try:
            defaults = parameters_of(read_notebook(self.notebook)) if self.notebook.name else {}
        except jobs.JobError:
            defaults = {}
        for name, value in defaults.items():
            self.params[name] = w.Text(json.dumps(value), description=name, style=style)
        title = w.HTML(f"<b>Train</b> <code>{html.escape(self.notebook.name or '?')}</code>")
        self.form = w.VBox([title, w.HBox([self.workers, self.gpus]), *self.params.values()])

    def _build_view(self) -> None:
        self.train_button = w.Button(description="Train", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.logs_button = w.Button(description="Logs", icon="file-text", disabled=True)
        self.tensorboard_button = w.Button(
            description="TensorBoard", icon="line-chart", disabled=True
        )
        self.deploy_button = w.Button(description="Deploy", icon="upload", disabled=True)
        self.train_button.on_click(lambda _: self.train())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.logs_button.on_click(lambda _: self.show_logs())
        self.tensorboard_button.on_click(lambda _: self.open_tensorboard())
        self.deploy_button.on_click(lambda _: self.open_deploy())
        self.buttons = w.HBox(
            [
                self.train_button,
                self.cancel_button,
                self.logs_button,
                self.tensorboard_button,
                self.deploy_button,
            ]
        )
        self.status = w.HTML("Ready: choose workers and parameters, then <b>Train</b>.")
        self.progress_bar = w.IntProgress(
            0, min=0, max=1, description="Progress", layout={"width": "60%"}
        )
        self.warnings = w.HTML()  # what the notebook check saw, before a submit
        self._confirmed: tuple | None = None  # the settings the user said "train anyway" to
        self.replicas = w.HTML()
        self.chart = w.HTML()
        self.figures = w.HBox(layout={"flex_flow": "row wrap"})  # what the job drew
        # the log of one replica, its end first (where the error is); a picker switches replica
        self.replica_picker = w.Dropdown(options=["worker-0"], description="Replica")
        self.replica_picker.observe(lambda change: self.show_logs(change["new"]), names="value")
        self.logs_bar = w.HBox([self.replica_picker], layout={"display": "none"})
        self.logs = w.HTML(layout={"width": "100%", "display": "none"})
        self.logs.add_class("hubforge-logs")
        self.board = w.Box(layout={"width": "100%"})  # TensorBoard or Deploy, below the job

    # -- actions ------------------------------------------------------------------------
    def param_values(self) -> dict[str, Any]:
        values = {}
        for name, box in self.params.items():
            try:
                values[name] = json.loads(box.value)
            except ValueError:
                values[name] = box.value
        return values

    def train(self) -> jobs.Job | None:
        """Submit the notebook with the form's settings; errors show in the status line.
        When the notebook check warns (cell numbers), the warnings show and the button asks
        "Train anyway": the next click with the same settings submits."""
        settings = (self.workers.value, self.gpus.value, json.dumps(self.param_values()))
        try:
            found = jobs.check(self.notebook, workers=self.workers.value)
        except (jobs.JobError, OSError) as e:
            self.status.value = f'<span style="color:#c00">Not submitted: {html.escape(str(e))}'
            return None
        if found and self._confirmed != settings:
            self._confirmed = settings
            items = "".join(f"<li>{html.escape(x)}</li>" for x in found)
            self.warnings.value = (
                f'<div class="hubforge-warnings" style="color:#a60"><b>Before it runs as a '
                f"job:</b><ul>{items}</ul></div>"
            )
            self.train_button.description = "Train anyway"
            self.status.value = "Check the warnings, then <b>Train anyway</b> (or fix the cells)."
            return None
        self.warnings.value = ""
        self.train_button.description = "Train"
        self._confirmed = None
        self.figures.children = []
        self._hide_logs()  # the logs on screen are always the job on screen's
        self.board.children = []
        try:
            self.job = jobs.submit(
                self.notebook,
                workers=self.workers.value,
                gpus_per_worker=self.gpus.value,
                params=self.param_values(),
                backend=self.backend,
            )
        except (jobs.JobError, jobs.JobNotFound, OSError) as e:
            self.status.value = f'<span style="color:#c00">Not submitted: {html.escape(str(e))}'
            return None
        self.train_button.disabled = True
        self.cancel_button.disabled = self.logs_button.disabled = False
        self.tensorboard_button.disabled = False
        self.refresh()
        self._start_polling()
        return self.job

    def cancel(self) -> None:
        if self.job is not None and self.job.status not in TERMINAL:
            self.job.cancel()
        self.refresh()

    def open_tensorboard(self) -> Any:
        """TensorBoard on the job's log dir, embedded below the job."""
        from .tensorboard import tensorboard

        widget = tensorboard(self.job, height=450)
        self.board.children = [widget]
        return widget

    def open_deploy(self) -> Any:
        """The Deploy widget for the job's exported model, below the job."""
        from .deploy import deploy

        widget = deploy(self.job)
        self.board.children = [widget]
        return widget

    def show_logs(self, replica: str | None = None) -> str:
        """The log of ``replica`` (default: the one the failure names, else worker-0), its
        last lines first shown; returns the whole text."""
        if self.job is None:
            return ""
        names = sorted(self.job.record.get("replicas") or {}) or ["worker-0"]
        replica = replica or blamed_replica(self.job.record.get("reason") or "") or names[0]
        if list(self.replica_picker.options) != names:
            self.replica_picker.options = names
        if self.replica_picker.value != replica and replica in names:
            self.replica_picker.value = replica  # calls back here with that replica
            return self.job.logs(replica)
        text = self.job.logs(replica)
        self.logs.value = logs_html(text, self.job.record.get("reason") or "")
        self.logs.layout.display = self.logs_bar.layout.display = "flex"
        return text

    def _hide_logs(self) -> None:
        self.logs.value = ""
        self.logs.layout.display = self.logs_bar.layout.display = "none"

    def refresh(self) -> str:
        """Read the job's state and progress into the view; returns the state."""
        if self.job is None:
            return "ready"
        record = self.job.refresh().record
        state, progress = record["state"], self.job.progress
        color = STATE_COLORS.get(state, "black")
        reason = f" — {html.escape(record['reason'])}" if record.get("reason") else ""
        if record.get("queue"):  # waiting for GPUs: where it stands (it starts by itself)
            place = f"#{record['queue']['position']} in the queue"
            reason = f" — {place}: {html.escape(record['queue']['reason'])}"
        self.status.value = (
            f'<b>{record["id"]}</b>: <span class="hubforge-state" '
            f'style="color:{color}">{state}</span>{reason}<br>'
            f"<code>{html.escape(progress_line(state, progress))}</code>"
        )
        self._show_progress(state, progress)
        self.replicas.value = "".join(
            f"<div>{name}: {replica_state(state, r)}</div>"
            for name, r in sorted(record["replicas"].items())
        )
        self.chart.value = line_chart(progress.get("history", []))
        if state in TERMINAL:
            self.train_button.disabled = False
            self.cancel_button.disabled = True
            self._show_figures(record.get("artifacts", {}).get("figures") or [])
        self.deploy_button.disabled = state != "succeeded"
        return state

    def _show_figures(self, paths: list[str]) -> None:
        """The PNGs the job drew, as thumbnails (read with this kernel's, the owner's, rights)."""
        if len(self.figures.children) == len(paths):
            return
        images = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue
            images.append(w.Image(value=data, format="png", layout={"width": "240px"}))
        self.figures.children = images

    def _show_progress(self, state: str, progress: dict[str, Any]) -> None:
        epochs, steps = progress.get("epochs") or 0, progress.get("steps") or 1
        self.progress_bar.max = max(1, epochs * steps)
        if state == "succeeded":
            self.progress_bar.value = self.progress_bar.max
        elif progress.get("epoch") is not None:
            value = progress["epoch"] * steps + (progress.get("step") or 0)
            self.progress_bar.value = min(self.progress_bar.max, value)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends (for scripts and tests), then refresh the view."""
        if self.job is None:
            raise RuntimeError("Nothing submitted yet: call train() first")
        self.job.wait(timeout=timeout)
        return self.refresh()

    # -- live updates -------------------------------------------------------------------
    def _start_polling(self) -> None:
        self._stop.clear()
        threading.Thread(target=self._poll, name="hubforge-train-poll", daemon=True).start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                if self.refresh() in TERMINAL:
                    return
            except Exception as e:  # keep the view alive; say what went wrong
                self.status.value = f"Could not refresh: {html.escape(str(e))}"

    def close(self) -> None:
        self._stop.set()
        super().close()


def replica_state(job_state: str, replica: dict[str, Any]) -> str:
    """A replica's state as the job's end settles it: a replica still marked running in an
    ended job was stopped with it."""
    state, code = replica.get("state"), replica.get("exit_code")
    if job_state in TERMINAL and state not in TERMINAL | {"exited"}:
        state = "stopped"
    return f"{state} (exit {code})" if code is not None else str(state)


def blamed_replica(reason: str) -> str | None:
    """The replica a failure's reason names ("worker-1: ModuleNotFoundError …")."""
    match = re.match(r"(worker-\d+)\b", reason)
    return match.group(1) if match else None


LOG_LINES = 200


def logs_html(text: str, reason: str) -> str:
    """The error first (when the job failed), then the log's last lines, newest at the end
    and scrolled into view; the start-up noise above them is cut."""
    lines = text.splitlines()
    cut = len(lines) - LOG_LINES
    shown = "\n".join(lines[-LOG_LINES:])
    head = (
        f'<div class="hubforge-log-error" style="color:#c00"><b>{html.escape(reason)}</b></div>'
        if reason
        else ""
    )
    more = f"<div><i>… {cut} earlier lines not shown</i></div>" if cut > 0 else ""
    return (
        f"{head}{more}<pre class='hubforge-log-text' style='max-height:240px;overflow:auto;"
        f"display:flex;flex-direction:column-reverse'><span>{html.escape(shown)}</span></pre>"
    )


def train(notebook: str | os.PathLike | None = None, **kwargs: Any) -> TrainWidget:
    """The Train widget for ``notebook`` (default: this notebook)."""
    return TrainWidget(notebook, **kwargs)
