"""A tuning trial's parameters and the numbers it reports, for TensorBoard's HParams
dashboard (#34).

Each trial's script starts by recording its parameters (:func:`record_trial`) into
``<job>/logs/hparams/`` as an HParams session named by its job; the numbers it then
reports (``hubforge.distribute.report``, and each epoch's Keras metrics through
``distribute.callbacks()``) go there too, as scalars. Other jobs write none (their
TensorBoard shows no extra run). TensorBoard opened over a search's jobs then lists every
trial with its parameters and metrics. A folder of its own: TensorBoard names the top
folder of a log dir given by name ``<name>/.``, which its HParams plugin cannot match its
metrics to. Written with TensorBoard's own protos and record format: no TensorFlow import,
so a trial of plain Python stays fast.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

SESSION = "hparams"  # <job>/logs/hparams: the session's parameters and metrics
PARAMS = ".params.hubforge"  # the suffix of the event file holding a session's parameters
_count = itertools.count()
_open: dict[Path, Any] = {}  # folder -> (file, RecordWriter) this process appends to
_without: set[Path] = set()  # folders of jobs without parameters: no metrics written


def _scalar_params(params: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """HParams takes bools, numbers and strings: lists and dicts are shown as their JSON."""
    shown: dict[str, bool | int | float | str] = {}
    for name, value in params.items():
        finite = not isinstance(value, float) or math.isfinite(value)
        if isinstance(value, bool | int | float | str) and finite:
            shown[str(name)] = value
        else:
            shown[str(name)] = json.dumps(value, default=str)
    return shown


def _new_file(folder: Path, suffix: str = ".hubforge") -> tuple[Any, Any]:
    """A new event file (TensorBoard reads every file of a folder, in name order)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    host, pid, n = socket.gethostname(), os.getpid(), next(_count)
    f = open(folder / f"events.out.tfevents.{now:.6f}.{host}.{pid}.{n}{suffix}", "wb")  # noqa: SIM115
    writer = RecordWriter(f)
    writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
    return f, writer


def write_params(log_dir: str | os.PathLike, params: dict[str, Any], group: str) -> bool:
    """The session's parameters, once per job (a restarted job does not write them
    again); True when written now."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2

    folder = Path(log_dir) / SESSION
    if folder.is_dir() and any(p.name.endswith(PARAMS) for p in folder.iterdir()):
        return False
    summary = summary_v2.hparams_pb(_scalar_params(params), trial_id=group)
    f, writer = _new_file(folder, PARAMS)
    with f:
        writer.write(event_pb2.Event(wall_time=time.time(), summary=summary).SerializeToString())
    return True


def write_metrics(log_dir: str | os.PathLike, metrics: dict[str, float], step: int) -> None:
    """Numbers a job with parameters reports, as scalars at ``step`` (the dashboard shows
    each one's last), appended to this process's file and flushed. A job without a session
    (no parameters: nothing to compare) writes nothing: its TensorBoard shows no extra run."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    folder = Path(log_dir) / SESSION
    if folder in _without:
        return
    if folder not in _open:
        if not (folder.is_dir() and any(p.name.endswith(PARAMS) for p in folder.iterdir())):
            _without.add(folder)  # the session is written at the job's start, or never
            return
        _open[folder] = _new_file(folder)
    f, writer = _open[folder]
    values = [
        summary_pb2.Summary.Value(tag=name, simple_value=float(value))
        for name, value in metrics.items()
    ]
    event = event_pb2.Event(
        wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
    )
    writer.write(event.SerializeToString())
    f.flush()


def record_trial(params: dict[str, Any]) -> None:
    """A trial's first line (the service writes it): its parameters as its session, by the
    chief of the job, once; in a kernel (no job) nothing."""
    job_dir = os.environ.get("HUBFORGE_JOB_DIR")
    if not job_dir or os.environ.get("HUBFORGE_REPLICA", "worker-0") != "worker-0":
        return
    group = os.environ.get("HUBFORGE_JOB_ID") or os.path.basename(job_dir)
    try:
        write_params(Path(job_dir) / "logs", params, group)
    except OSError as e:  # the trial runs all the same
        print(f"hubforge: the trial's parameters were not written for TensorBoard ({e})")
