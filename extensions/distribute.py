"""What a training notebook imports; it behaves the same in the kernel and in a job.

```python
import tensorflow as tf
from hubforge import distribute

strategy = distribute.strategy()
with strategy.scope():
    model = build_model()
model.fit(data, epochs=epochs, callbacks=distribute.callbacks())
model.save(distribute.export_dir())
```

In a job, the supervisor sets ``TF_CONFIG`` and ``HUBFORGE_JOB_DIR``; in a kernel neither is set
and everything falls back to one process and a scratch folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.jsonl"
TRAINING_DATA = "training-data.npz"  # save_training_data: what optimize fine-tunes with


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` (empty outside a distributed job)."""
    raw = os.environ.get("TF_CONFIG", "")
    return json.loads(raw) if raw else {}


def num_workers() -> int:
    cluster = tf_config().get("cluster", {})
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) or 1


def task() -> tuple[str, int]:
    info = tf_config().get("task", {})
    return info.get("type", "worker"), int(info.get("index", 0))


def is_chief() -> bool:
    """True for the one task that writes the real outputs (worker 0 without a chief)."""
    kind, index = task()
    has_chief = "chief" in tf_config().get("cluster", {})
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


_made: Any = None  # the one strategy of this program, once made


def strategy():
    """MultiWorkerMirroredStrategy across the job's workers, MirroredStrategy over several
    local GPUs, else TensorFlow's default strategy. Made once per program: in a job the
    runner makes it before the notebook's first line (collective ops must be configured at
    program start), so it may be asked for after the data pipeline is built, in any cell."""
    global _made
    if _made is not None:
        return _made
    import tensorflow as tf

    if num_workers() > 1:
        _made = tf.distribute.MultiWorkerMirroredStrategy()
        _stop_on_sigterm()
    elif len(tf.config.list_physical_devices("GPU")) > 1:
        _made = tf.distribute.MirroredStrategy()
    else:
        return tf.distribute.get_strategy()
    return _made


def _stop_on_sigterm() -> None:
    """A job's worker ends at once on SIGTERM again. The strategy's preemption notifier
    takes SIGTERM over (for a checkpoint handler Hubforge does not use: BackupAndRestore
    saves at each epoch's end), so a cancelled, preempted or restarted group waited the
    supervisor's whole grace period before SIGKILL, with its GPUs held all that time."""
    if os.environ.get("HUBFORGE_JOB_DIR") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def global_batch_size(per_replica: int) -> int:
    """Batch size for the whole job: ``per_replica`` times the replicas in sync."""
    return per_replica * strategy_replicas()


def strategy_replicas() -> int:
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    return num_workers() * max(1, gpus)


def job_dir() -> Path:
    """The job's folder; in a kernel, a scratch folder under the user's area or /tmp."""
    if os.environ.get("HUBFORGE_JOB_DIR"):
        return Path(os.environ["HUBFORGE_JOB_DIR"])
    base = os.environ.get("HUBFORGE_USER_AREA") or tempfile.gettempdir()
    return Path(base) / "jobs" / "interactive"


def log_dir() -> Path:
    """Where TensorBoard logs go (``<job>/logs``)."""
    return job_dir() / "logs"


def export_dir(base: str | os.PathLike | None = None) -> str:
    """Where to ``model.save``: the real folder on the chief, a throw-away one elsewhere
    (every worker must save under MultiWorkerMirroredStrategy, only one may win)."""
    target = Path(base) if base else job_dir() / "model"
    if is_chief():
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(target)
    _, index = task()
    return tempfile.mkdtemp(prefix=f"hubforge-worker-{index}-")


def callbacks(tensorboard: bool = True, backup: bool = True, progress: bool = True) -> list:
    """TensorBoard logs, BackupAndRestore (resume after a restart) and progress records."""
    import tensorflow as tf

    result = []
    if tensorboard:
        result.append(tf.keras.callbacks.TensorBoard(log_dir=str(_per_task(log_dir()))))
    # progress before the backup (Keras calls them in this order): an epoch's record is
    # written before the checkpoint that lets a restarted job go on after that epoch, so a
    # kill between the two never leaves an epoch out of the history (written twice, the last
    # attempt's record wins)
    if progress:
        result.append(make_progress_callback(job_dir() / PROGRESS_FILE))
    if backup and os.environ.get("HUBFORGE_JOB_DIR"):
        folder = job_dir() / "backup"
        _warm_start(folder)
        keep = os.environ.get(KEEP_BACKUP) == "1"  # a Hyperband trial another may continue
        result.append(tf.keras.callbacks.BackupAndRestore(str(folder), delete_checkpoint=not keep))
    return result


KEEP_BACKUP = "HUBFORGE_KEEP_BACKUP"  # "1": the backup outlives the end of training
WARM_START = "HUBFORGE_WARM_START"  # a job of the same user whose backup this one goes on from


def _warm_start(folder: Path) -> None:
    """A Hyperband trial that takes an earlier one further starts from that trial's last
    epoch: its kept backup copied in as this job's own (BackupAndRestore then restores the
    weights, the optimizer and the epoch). A job that already has a backup (a restart)
    keeps its own."""
    parent = os.environ.get(WARM_START, "")
    if not parent or folder.exists():
        return
    source = job_dir().parent / parent / "backup"
    try:
        usable = bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,80}", parent)) and source.is_dir()
    except OSError:  # a link to a folder this account cannot read
        usable = False
    if not usable:
        print(
            f"hubforge: no backup of {parent} to go on from; training from the start",
            file=sys.stderr,
        )
        return
    # every worker copies (each restores from it); the first rename wins, the others' go
    partial = folder.with_name(f"{folder.name}.copying-{os.getpid()}")
    shutil.copytree(source, partial, symlinks=True)
    try:
        partial.rename(folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)


def _per_task(path: Path) -> Path:
    """Non-chief workers log beside the chief, never over its files: in the job's own folder
    (a shared /tmp name would be another account's, or a link one user left for another)."""
    if is_chief():
        return path
    kind, index = task()
    return job_dir() / ".scratch" / f"{kind}-{index}" / path.name


_reports = 0  # report() calls in this process: each one's scalars go at the next step


def save_training_data(x: Any, y: Any) -> str | None:
    """Keep the job's training data with its model (``<job>/training-data.npz``, written
    by the chief, atomically): ``hubforge.serving.optimize(job)`` and the sidebar's
    "Optimize for mobile" fine-tune and measure with it when no other data is named. Returns
    the path (None on other workers); in a kernel, the scratch job folder's."""
    import numpy as np

    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.ndim < 1 or len(x) != len(y) or not len(x):
        raise ValueError(
            f"save_training_data(x, y): as many inputs as labels, at least one (got x shaped "
            f"{list(x.shape)}, y shaped {list(y.shape)})"
        )
    if not is_chief():
        return None
    path = job_dir() / TRAINING_DATA
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".training-data-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x.astype("float32"), y=y)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def report(**metrics: float) -> None:
    """Report numbers a tuning search can optimise (``report(val_accuracy=0.93)``): the
    chief's are written to the job's progress records (a kernel's to its scratch folder),
    the last value of each name wins. Keras history metrics are read without this."""
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"report({name}=...): a number, not {type(value).__name__}")
    if not is_chief():
        return
    path = job_dir() / PROGRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get("HUBFORGE_JOB_DIR"):  # a job's numbers, for TensorBoard's HParams too
        from .hparams import write_metrics

        global _reports
        _reports += 1
        write_metrics(log_dir(), metrics, step=_reports)
    record = {"event": "report", "metrics": {k: float(v) for k, v in metrics.items()}}
    record.update(time=time.time(), attempt=int(os.environ.get("HUBFORGE_ATTEMPT", "0")))
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def make_progress_callback(path: Path):
    """A Keras callback appending epoch/step records (JSON lines) that views read."""
    import tensorflow as tf

    attempt = int(os.environ.get("HUBFORGE_ATTEMPT", "0"))

    class ProgressCallback(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.last_write = 0.0

        def _write(self, record: dict[str, Any]) -> None:
            if not is_chief():
                return
            record.update(time=time.time(), attempt=attempt)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

        def on_train_begin(self, logs=None) -> None:
            self._write(
                {
                    "event": "train_begin",
                    "epochs": self.params.get("epochs"),
                    "steps": self.params.get("steps"),
                }
            )

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.epoch = epoch
            self._write({"event": "epoch_begin", "epoch": epoch})

        def on_train_batch_end(self, batch, logs=None) -> None:
            now = time.monotonic()
            if now - self.last_write >= 1.0:  # at most one step record a second
                self.last_write = now
                self._write(
                    {
                        "event": "step",
                        "epoch": self.epoch,
                        "step": batch + 1,
                        "metrics": _floats(logs),
                    }
                )

        def on_epoch_end(self, epoch, logs=None) -> None:
            self._write({"event": "epoch_end", "epoch": epoch, "metrics": _floats(logs)})
            if is_chief() and os.environ.get("HUBFORGE_JOB_DIR"):  # for TensorBoard's HParams
                from .hparams import write_metrics

                write_metrics(log_dir(), _floats(logs), step=epoch)

        def on_train_end(self, logs=None) -> None:
            self._write({"event": "train_end", "metrics": _floats(logs)})

    return ProgressCallback()


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
