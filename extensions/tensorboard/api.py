"""``open`` a TensorBoard on a log dir (or a job, or several to compare), ``list``, ``stop``.

Each instance listens on a free loopback port with ``--path_prefix`` set to the path
jupyter-server-proxy serves it under (``<server>/proxy/absolute/<port>``), so every request
the dashboard makes stays under the user's server and the hub's authentication.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ..processes import free_port
from . import process
from .errors import StateNotWritable, TensorBoardError, writing
from .store import InstanceStore

DEFAULT_MAX_INSTANCES = 3


def server_prefix() -> str | None:
    """The user's server URL path (e.g. /user/alice/) when running behind a hub."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX")


def max_instances() -> int:
    return int(os.environ.get("HUBFORGE_TENSORBOARD_MAX", DEFAULT_MAX_INSTANCES))


def allowed_roots() -> list[Path]:
    """The user's home, their area of the data folder, and the shared data sets."""
    from ..jobs.api import current_user, data_root

    roots = [
        Path(os.environ.get("HOME") or Path.home()),
        Path(os.environ.get("HUBFORGE_USER_AREA") or data_root() / "users" / current_user()),
        data_root() / "datasets",
    ]
    return [r.resolve() for r in roots]


# a job's id: its name and 6 hex digits; a tuning trial's adds -t<trial>
JOB_ID = re.compile(r"[a-z0-9-]+-[0-9a-f]{6}(-t[0-9]+)?")


def _job_log_dir(job: Any) -> Path | None:
    from .. import jobs

    if isinstance(job, jobs.Job):
        return Path(job.artifacts["log_dir"])
    if isinstance(job, str) and JOB_ID.fullmatch(job):
        try:
            return Path(jobs.get(job).artifacts["log_dir"])
        except jobs.JobNotFound:
            return None
    return None


def resolve(item: Any) -> tuple[str, Path]:
    """(label, log dir) of a path, a Job or a job id; TensorBoardError when unusable."""
    job_dir = _job_log_dir(item)
    path = job_dir if job_dir is not None else Path(os.fspath(item)).expanduser()
    label = (item.id if hasattr(item, "id") else str(item)) if job_dir else path.name
    path = path.resolve()
    if not any(path == r or r in path.parents for r in allowed_roots()):
        raise TensorBoardError(
            f"{path} is outside your areas ({', '.join(map(str, allowed_roots()))}); "
            "copy or write the logs there"
        )
    if not path.is_dir():
        raise TensorBoardError(f"Log dir {path} does not exist yet: train first or check it")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label) or "run", path


class TensorBoard:
    """One running TensorBoard; ``url`` opens it through the user's server."""

    def __init__(self, record: dict[str, Any], store: InstanceStore):
        self.record = record
        self._store = store

    name = property(lambda self: self.record["name"])
    port = property(lambda self: self.record["port"])
    logdirs = property(lambda self: dict(self.record["logdirs"]))

    @property
    def url(self) -> str:
        prefix = self.record.get("prefix", "")
        if "/proxy/absolute/" in prefix:
            return f"{prefix}/"  # through the owner's server
        return f"http://127.0.0.1:{self.port}{prefix}/"

    @property
    def running(self) -> bool:
        return process.alive(self.record)

    def stop(self) -> None:
        stop(self.name, store=self._store)

    def __repr__(self) -> str:
        return f"<TensorBoard {self.name} {self.url} {list(self.logdirs.values())}>"

    def _repr_html_(self) -> str:
        return f'<a href="{self.url}" target="_blank">TensorBoard {self.name}</a>'


def _logdir_args(logdirs: dict[str, str]) -> list[str]:
    if len(logdirs) == 1:
        return ["--logdir", next(iter(logdirs.values()))]
    return ["--logdir_spec", ",".join(f"{k}:{v}" for k, v in logdirs.items())]


def open(
    logdir_or_job: Any,
    name: str | None = None,
    store: InstanceStore | None = None,
    key: str | None = None,
) -> TensorBoard:
    """A TensorBoard on ``logdir_or_job`` (a path, a Job, a job id, a tuning run: its
    trials, or a list to compare).
    Opening the same log dirs again returns the running instance. ``key``: the path key of
    an instance being restored (its URL stays the same); a new one otherwise."""
    store = store or InstanceStore()
    items = logdir_or_job if isinstance(logdir_or_job, list | tuple) else [logdir_or_job]
    if name is None and len(items) == 1 and _is_tuning(items[0]):
        name = items[0].id
    items = [job for item in items for job in _trial_jobs(item)]
    if not items:
        raise TensorBoardError("Give at least one log dir or job")
    logdirs = dict(resolve(item) for item in items)
    logdirs = {k: str(v) for k, v in logdirs.items()}
    started: dict[str, Any] | None = None
    try:
        with store.edit() as instances:
            for record in list(instances.values()):
                if process.alive(record) and record["logdirs"] == logdirs:
                    return TensorBoard(record, store)
            running = [r for r in instances.values() if process.alive(r)]
            if len(running) >= max_instances():
                names = ", ".join(r["name"] for r in running)
                raise TensorBoardError(
                    f"You already run {len(running)} TensorBoards (the maximum): {names}. "
                    "Stop one with hubforge.tensorboard.stop(NAME) or `hubforge tensorboard stop`"
                )
            started = _start(_unique_name(name or "-".join(logdirs), instances), logdirs, key)
            instances[started["name"]] = started
    except StateNotWritable:
        if started is not None:  # not recorded: it would be nobody's to stop
            process.terminate(started)
        raise
    return TensorBoard(started, store)


def _is_tuning(item: Any) -> bool:
    from ..jobs.tuning_api import Tuning

    return isinstance(item, Tuning)


def _trial_jobs(item: Any) -> list[Any]:
    """A tuning run stands for its trials' jobs that have written logs (the HParams
    dashboard then lists each trial's parameters beside its metrics); anything else for
    itself."""
    if not _is_tuning(item):
        return [item]
    jobs = [t.job for t in item.trials if t.state != "pending"]
    found = [j for j in jobs if j is not None and Path(j.artifacts["log_dir"]).is_dir()]
    if not found:
        raise TensorBoardError(f"No trial of {item.id} has written logs yet: wait for one to start")
    return found


def _unique_name(base: str, instances: dict[str, Any]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base)[:60] or "tensorboard"
    name, n = base, 2
    while name in instances and process.alive(instances[name]):
        name, n = f"{base}-{n}", n + 1
    return name


def _start(name: str, logdirs: dict[str, str], key: str | None = None) -> dict[str, Any]:
    port = free_port()
    base = server_prefix()
    # TensorBoard answers only under a path that ends in this instance's key: other users
    # reach the port (through their own server's proxy, too) but not the path
    key = key or secrets.token_urlsafe(24)
    prefix = f"{base.rstrip('/')}/proxy/absolute/{port}/{key}" if base else f"/{key}"
    log_file = InstanceStore().path.parent / "tensorboard-logs" / f"{name}.log"
    with writing(log_file):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        launched = process.launch(_logdir_args(logdirs), port, prefix, log_file)
    record = {
        "name": name,
        "logdirs": logdirs,
        "port": port,
        "prefix": prefix,
        "key": key,
        "started": time.time(),
        "last_activity": time.time(),
        **launched,
    }
    if not process.wait_listening(port, record):
        process.terminate(record)
        tail = log_file.read_text(errors="replace")[-800:] if log_file.exists() else ""
        raise TensorBoardError(f"TensorBoard did not start on port {port}:\n{tail}")
    return record


def list_instances(store: InstanceStore | None = None) -> list[TensorBoard]:
    store = store or InstanceStore()
    return [TensorBoard(r, store) for r in store.read().values() if process.alive(r)]


def get(name: str, store: InstanceStore | None = None) -> TensorBoard:
    store = store or InstanceStore()
    record = store.read().get(name)
    if record is None or not process.alive(record):
        names = ", ".join(tb.name for tb in list_instances(store)) or "none"
        raise TensorBoardError(f"No running TensorBoard {name!r}; running: {names}")
    return TensorBoard(record, store)


def stop(name: str, store: InstanceStore | None = None) -> None:
    store = store or InstanceStore()
    with store.edit() as instances:
        record = instances.pop(name, None)
        if record is None:
            names = ", ".join(sorted(instances)) or "none"
            raise TensorBoardError(f"No TensorBoard {name!r}; recorded: {names}")
    process.terminate(record)


def stop_processes(store: InstanceStore | None = None) -> int:
    """Stop every running instance but keep the records (the next server restores them)."""
    running = list_instances(store)
    for tb in running:
        process.terminate(tb.record)
    return len(running)
