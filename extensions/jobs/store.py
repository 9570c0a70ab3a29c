"""A job's folder on the shared data area, the only record of the job.

users/<owner>/jobs/<id>/
    job.json          spec, state, replicas, restarts (written atomically, by its supervisor)
    supervisor.json   the supervisor as its starter recorded it (when the service keeps no index)
    script.py         the converted notebook
    replicas/<r>.log  each replica's output, every attempt appended
    progress.jsonl    epoch/step records of the chief
    logs/             TensorBoard logs      model/   the exported SavedModel
    backup/           BackupAndRestore checkpoints
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile
from ..confined import UnsafeEntry
from ..distribute import PROGRESS_FILE
from ..owner_files import Local, OwnerFiles

# "damaged": job.json is not readable (listed with the file and what to do, never rewritten)
TERMINAL = {"succeeded", "failed", "cancelled", "damaged"}


STARTED_FILE = "supervisor.json"
MAX_RECORD = 1024 * 1024  # bytes of job.json (a real one is a few KB)
MAX_PROGRESS = 2 * 1024 * 1024  # bytes of progress.jsonl read (its newest records)
_SHAPE = {
    "state": str,
    "spec": dict,
    "restarts": int,
    "replicas": dict,
    "created": (int, float),
    "updated": (int, float),
}


def record_problem(record: Any) -> str | None:
    """What makes ``record`` (job.json, the owner's to write) not a job's record, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in _SHAPE.items():
        if key in record and not isinstance(record[key], kind):
            return f"{key!r} is not a {getattr(kind, '__name__', 'number')}"
    if not isinstance(record.get("state"), str) or not isinstance(record.get("spec"), dict):
        return "no 'state' or 'spec'"
    workers = record["spec"].get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= 1024:
        return "spec.workers is not a number of workers"
    supervisor = record.get("supervisor")
    if supervisor is not None and not _process_record(supervisor):
        return "'supervisor' is not a process record"
    return None


def _process_record(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("pid"), int)
        and not isinstance(value.get("pid"), bool)
        and 0 < value["pid"] < 2**22
        and isinstance(value.get("create_time"), int | float)
    )


class JobStore:
    """Reads and writes never follow a link below the owner's area (``users/<owner>``, two
    folders up): they go through ``files`` (the area as this process may reach it: itself,
    or, for the service with per-user accounts, a helper process that became the owner)."""

    def __init__(self, path: str | Path, files: OwnerFiles | None = None):
        self.path = Path(path)
        self.area = self.path.parent.parent
        self.files = files if files is not None else Local(self.area)

    def _relative(self, name: str) -> Path:
        return Path(self.path.parent.name, self.path.name, name)

    def read_file(self, name: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        """The bytes of the job's file ``name`` from ``offset``, at most ``limit`` of them
        (None when missing); UnsafeEntry for a link."""
        return self.files.read(self._relative(name), offset, limit)

    def _write_json(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        self.files.write(self._relative("job.json"), text.encode(), 0o644)

    def exists(self) -> bool:
        """Whether the job's record is there; a link on the way counts (reading the job
        then says it is a link, never follows it)."""
        try:
            return self.files.lstat(self._relative("job.json")) is not None
        except UnsafeEntry:
            return True
        except NotADirectoryError:
            return False

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def record_file(self) -> Path:
        return self.path / "job.json"

    @property
    def script_file(self) -> Path:
        return self.path / "script.py"

    def replica_log(self, replica: str) -> Path:
        return self.path / "replicas" / f"{replica}.log"

    def create(self, record: dict[str, Any], script: str, private: bool = False) -> None:
        """Make the job's folder (``private``: 0700, its owner has an account of their own),
        every folder made relative to the one above, never through a link."""
        mode = 0o700 if private else 0o755
        self.files.mkdirs(self.path.parent.name, mode)
        self.files.mkdirs(self._relative(""), mode, exist_ok=False)
        # TensorBoard can open logs/ before the first step; tmp/ is the job's private TMPDIR
        for sub in ("replicas", "logs", "tmp"):
            self.files.mkdirs(self._relative(sub))
        self.files.write(self._relative("script.py"), script.encode(), 0o644)
        self._write_json(record)

    def read(self) -> dict[str, Any]:
        """job.json, checked: the owner may have written anything there (DamagedStateFile
        for what is not a job's record; only its first MAX_RECORD bytes are ever read)."""
        data = self.read_file("job.json", 0, MAX_RECORD + 1)
        if data is None:
            raise FileNotFoundError(self.record_file)
        if len(data) > MAX_RECORD:
            raise DamagedStateFile(self.record_file, f"larger than {MAX_RECORD} bytes")
        try:
            record = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise DamagedStateFile(self.record_file, str(e) or type(e).__name__) from None
        problem = record_problem(record)
        if problem:
            raise DamagedStateFile(self.record_file, problem)
        return record

    def damaged_record(self, owner: str, error: Exception) -> dict[str, Any]:
        """What a job list shows for a job whose job.json cannot be read."""
        info = self.files.lstat(self._relative(""))  # never where a link points
        if info is None:
            raise FileNotFoundError(self.path)
        when = info["mtime"]
        return {
            "id": self.id,
            "owner": owner,
            "spec": {"name": self.id, "workers": 0, "gpus_per_worker": 0},
            "state": "damaged",
            "reason": str(error),
            "restarts": 0,
            "replicas": {},
            "created": when,
            "updated": when,
            "supervisor": None,
            "backend": "local",
            "artifacts": self.artifacts(),
        }

    def update(self, **changes: Any) -> dict[str, Any]:
        record = self.read()
        record.update(changes, updated=time.time())
        self._write_json(record)
        return record

    def record_started(self, supervisor: dict[str, Any]) -> None:
        """Name the supervisor just started, in a file of the starter's own: job.json is the
        supervisor's to write, and a read-modify-write of it here could undo its first write
        (a running job shown 'pending' until it ended)."""
        text = json.dumps({k: supervisor[k] for k in ("pid", "create_time")}) + "\n"
        self.files.write(self._relative(STARTED_FILE), text.encode(), 0o644)

    def started(self) -> dict[str, Any] | None:
        """The supervisor :meth:`record_started` named, or None (none, or not a process
        record: the owner may have written anything there)."""
        try:
            data = self.read_file(STARTED_FILE, 0, 4096)
            value = json.loads(data) if data else None
        except (UnsafeEntry, NotADirectoryError, ValueError, RecursionError):
            return None
        return value if _process_record(value) else None

    def replace(self, record: dict[str, Any]) -> None:
        """Write ``record`` as the whole of job.json (its supervisor, when it was damaged)."""
        self._write_json(record)

    def progress_records(self) -> list[dict[str, Any]]:
        """The progress records, from the last MAX_PROGRESS bytes of the file at most."""
        try:
            info = self.files.lstat(self._relative(PROGRESS_FILE))
        except (UnsafeEntry, NotADirectoryError):
            info = None
        start = max(0, int(info["size"]) - MAX_PROGRESS) if info else 0
        data = self.read_file(PROGRESS_FILE, start, MAX_PROGRESS)
        if data is None:
            return []
        if start:  # the first line is cut: not a record
            data = data[data.find(b"\n") + 1 :]
        records = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line being written right now, or not a record
            if _progress_record(record):  # the owner's file: only well-formed records count
                records.append(record)
        return records

    def artifacts(self) -> dict[str, Any]:
        return {
            "job_dir": str(self.path),
            "model_dir": str(self.path / "model"),
            "log_dir": str(self.path / "logs"),
            "script": str(self.script_file),
            "figures": self.figures(),
            "executed_notebook": self.executed_notebook(),
        }

    def executed_notebook(self) -> str | None:
        """A scheduled run's notebook with its outputs (hubforge.schedules.executor)."""
        try:
            info = self.files.lstat(self._relative("executed.ipynb"))
        except (UnsafeEntry, OSError):
            return None
        return str(self.path / "executed.ipynb") if info and info["kind"] == "file" else None

    def figures(self) -> list[str]:
        """The PNGs the job drew (plt.show() and figures left open), in order."""
        try:
            names = self.files.listdir(self._relative("figures"))
        except (UnsafeEntry, OSError):
            return []
        numbers = [n[len("figure-") : -len(".png")] for n in names if n.endswith(".png")]
        pngs = [f"figure-{n}.png" for n in sorted(int(x) for x in numbers if x.isdigit())]
        return [str(self.path / "figures" / n) for n in pngs]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _progress_record(record: Any) -> bool:
    """Whether ``record`` is one the progress callback writes (the owner may write others)."""
    if not isinstance(record, dict) or record.get("event") not in PROGRESS_EVENTS:
        return False
    for key in ("epoch", "step", "epochs", "steps", "attempt"):
        value = record.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return False
    if record["event"] in ("epoch_begin", "step", "epoch_end") and record.get("epoch") is None:
        return False
    if record["event"] == "step" and record.get("step") is None:
        return False
    metrics = record.get("metrics", {})
    return isinstance(metrics, dict) and all(
        isinstance(k, str) and _number(v) for k, v in metrics.items()
    )


PROGRESS_EVENTS = {"train_begin", "epoch_begin", "step", "epoch_end", "train_end", "report"}


def summarize_progress(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Latest epoch/step/metrics and the per-epoch history (last attempt wins)."""
    summary: dict[str, Any] = {
        "epoch": None,
        "epochs": None,
        "step": None,
        "steps": None,
        "metrics": {},
        "history": [],
    }
    finished: dict[int, dict[str, Any]] = {}
    for r in records:
        event = r.get("event")
        if event == "train_begin":
            summary.update(epochs=r.get("epochs"), steps=r.get("steps"))
        elif event == "epoch_begin":
            summary.update(epoch=r["epoch"], step=0)
        elif event == "step":
            summary.update(epoch=r["epoch"], step=r["step"], metrics=r.get("metrics", {}))
        elif event == "epoch_end":
            finished[r["epoch"]] = r.get("metrics", {})
            summary.update(metrics=r.get("metrics", {}))
        elif event == "report":  # distribute.report(name=value): the last value wins
            summary.setdefault("reported", {}).update(r.get("metrics", {}))
    summary["history"] = [{"epoch": e, **m} for e, m in sorted(finished.items())]
    summary["epochs_done"] = len(finished)
    return summary
