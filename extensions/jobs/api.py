"""The public jobs API: ``submit`` a notebook or script, then watch the returned ``Job``.

Inside a user's server the hubforge service runs the job; with no hub around (a plain script on
a laptop) the local backend runs it from this process.
"""

from __future__ import annotations

import getpass
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..client import ServiceClient
from .base import JobBackend
from .convert import lint, read_notebook, to_script, uses_strategy
from .errors import JobError
from .local import LocalJobBackend
from .remote import ServiceJobBackend
from .spec import DEFAULT_MAX_WORKERS, JobSpec
from .store import TERMINAL


def data_root() -> Path:
    """$HUBFORGE_DATA, or the local workbench's default data folder."""
    if os.environ.get("HUBFORGE_DATA"):
        return Path(os.environ["HUBFORGE_DATA"])
    from ..workbench import default_data_dir

    return Path(default_data_dir()) / "hdfs"


def current_user() -> str:
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def default_backend() -> JobBackend:
    if ServiceClient.available():
        return ServiceJobBackend(ServiceClient())
    return LocalJobBackend(data_root())


class Job:
    """A handle on one job; every property reads the current state."""

    def __init__(self, record: dict[str, Any], backend: JobBackend, warnings: list[str] = ()):
        self._record = record
        self._backend = backend
        self.warnings = list(warnings)  # what the notebook check saw at submit (cell numbers)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self._record['state']}>"

    @property
    def id(self) -> str:
        return self._record["id"]

    @property
    def name(self) -> str:
        return self._record["spec"]["name"]

    @property
    def owner(self) -> str:
        return self._record["owner"]

    @property
    def record(self) -> dict[str, Any]:
        return dict(self._record)

    def refresh(self) -> Job:
        self._record = self._backend.get(self.owner, self.id)
        return self

    @property
    def status(self) -> str:
        return self.refresh()._record["state"]

    @property
    def reason(self) -> str:
        return self._record.get("reason", "")

    @property
    def queue(self) -> dict[str, Any] | None:
        """While the job waits in the queue: ``{"position": 1, "reason": "waiting for 1 GPU
        (0 free); yours is next"}`` (fresh); None once it started."""
        return self.refresh()._record.get("queue")

    @property
    def replicas(self) -> dict[str, dict[str, Any]]:
        return self.refresh()._record["replicas"]

    @property
    def progress(self) -> dict[str, Any]:
        return self._backend.progress(self.owner, self.id)

    @property
    def artifacts(self) -> dict[str, str]:
        return self._record["artifacts"]

    def logs(self, replica: str = "worker-0", follow: bool = False) -> str | Iterator[str]:
        """The replica's log text; with ``follow``, an iterator of new text until the job ends."""
        if not follow:
            return "".join(self._pages(replica, 0)[0])
        return self._follow(replica)

    def _pages(self, replica: str, offset: int) -> tuple[list[str], int]:
        """Every page of the log from ``offset`` as it is now (a call returns one page)."""
        pages = []
        while True:
            text, offset = self._backend.logs(self.owner, self.id, replica, offset)
            if not text:
                return pages, offset
            pages.append(text)

    def _follow(self, replica: str) -> Iterator[str]:
        offset = 0
        while True:
            done = self.status in TERMINAL
            pages, offset = self._pages(replica, offset)
            yield from pages
            if done:
                return
            time.sleep(0.5)

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> str:
        """Block until the job ends; returns its final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (state := self.status) not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Job {self.id} still {state} after {timeout}s")
            time.sleep(poll)
        return state

    def cancel(self) -> Job:
        self._record = self._backend.cancel(self.owner, self.id)
        return self


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return slug or "job"


def _inside_home(path: Path) -> Path:
    home = Path(os.environ.get("HOME") or Path.home()).resolve()
    try:
        resolved = path.expanduser().resolve()
    except (ValueError, OSError) as e:  # a NUL byte, a link loop
        raise JobError(f"{str(path)!r} is not a path to use ({e})") from None
    if resolved != home and home not in resolved.parents:
        raise JobError(f"{path} is outside your home folder {home}; move the notebook there")
    return resolved


def script_for(path: Path, params: dict[str, Any]) -> str:
    if path.suffix == ".ipynb":
        return to_script(read_notebook(path), params)
    if path.suffix == ".py":
        if params:
            raise JobError("params need a notebook with a cell tagged 'parameters'")
        if not path.is_file():
            raise JobError(f"Script {str(path)!r} does not exist")
        return path.read_text(encoding="utf-8")
    raise JobError(f"{path.name}: submit a notebook (.ipynb) or a Python script (.py)")


def submit(
    notebook_or_script: str | os.PathLike,
    workers: int = 1,
    gpus_per_worker: int = 0,
    cpu: float | None = None,
    memory: str | None = None,
    params: dict[str, Any] | None = None,
    name: str | None = None,
    max_restarts: int = 2,
    backend: JobBackend | None = None,
    priority: str = "normal",
    notify: dict[str, Any] | None = None,
) -> Job:
    """Convert the notebook and run it as a distributed TensorFlow job with ``workers``;
    when the GPUs it needs are taken it waits in the workbench's queue (state ``queued``,
    ``job.queue`` says its place and why) and starts by itself. ``priority``: one of the
    workbench's priority classes (by default interactive, normal, batch). ``notify``: be told
    when it ends, e.g. ``{"on": "failure", "email": True}`` (see docs/schedules.md)."""
    path = _inside_home(Path(notebook_or_script))
    max_gpus = os.environ.get("HUBFORGE_PROFILE_GPUS")
    spec = JobSpec(
        name=name or _slug(path.stem),
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        cpu=cpu,
        memory=memory,
        params=dict(params or {}),
        max_restarts=max_restarts,
        source=str(path),
        priority=priority,
    )
    spec.validate(max_workers=DEFAULT_MAX_WORKERS, max_gpus=int(max_gpus) if max_gpus else None)
    script = script_for(path, spec.params)
    if workers > 1 and not uses_strategy(script):
        raise JobError(
            f"{path.name} never enters a tf.distribute strategy scope: with {workers} workers "
            "each would train its own model. Build the model inside "
            "`with hubforge.distribute.strategy().scope():`, or submit with workers=1."
        )
    backend = backend or default_backend()
    warnings = check(path, workers)
    if notify is None:
        return Job(backend.submit(current_user(), spec, script), backend, warnings)
    if not isinstance(backend, ServiceJobBackend):
        raise JobError("notify: notifications are sent by the workbench's service (in a hub)")
    return Job(backend.submit(current_user(), spec, script, notify=notify), backend, warnings)


def check(notebook_or_script: str | os.PathLike, workers: int = 1) -> list[str]:
    """What will go wrong or differ when this notebook runs as a job with ``workers``, with
    cell numbers (see convert.lint); submit() runs it too (``job.warnings``)."""
    import nbformat

    path = _inside_home(Path(notebook_or_script))
    if path.suffix == ".ipynb":
        nb = read_notebook(path)
    else:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(path.read_text())])
    areas = tuple(
        str(Path(p).resolve())
        for p in (
            Path.home(),
            os.environ.get("HUBFORGE_DATA"),
            os.environ.get("HUBFORGE_USER_AREA"),
        )
        if p
    )
    return lint(nb, workers, areas)


def get(job_id: str, backend: JobBackend | None = None) -> Job:
    backend = backend or default_backend()
    return Job(backend.get(current_user(), job_id), backend)


def list_jobs(backend: JobBackend | None = None) -> list[Job]:
    backend = backend or default_backend()
    return [Job(r, backend) for r in backend.list(current_user())]
