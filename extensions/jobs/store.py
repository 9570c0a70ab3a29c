"""A job's folder on the shared data area, the only record of the job.

users/<owner>/jobs/<id>/
    job.json          spec, state, replicas, restarts (written atomically)
    script.py         the converted notebook
    replicas/<r>.log  each replica's output, every attempt appended
    progress.jsonl    epoch/step records of the chief
    logs/             TensorBoard logs      model/   the exported SavedModel
    backup/           BackupAndRestore checkpoints
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..atomic import DamagedStateFile
from ..confined import (
    UnsafeEntry,
    list_beneath,
    make_folders_beneath,
    read_beneath,
    write_beneath,
)
from ..distribute import PROGRESS_FILE

# "damaged": job.json is not readable (listed with the file and what to do, never rewritten)
TERMINAL = {"succeeded", "failed", "cancelled", "damaged"}


class JobStore:
    """Reads and writes never follow a link below the owner's area (``users/<owner>``, two
    folders up): with per-user accounts the service is root and the folder is the owner's."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.area = self.path.parent.parent

    def _relative(self, name: str) -> Path:
        return Path(self.path.parent.name, self.path.name, name)

    def read_file(self, name: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        """The bytes of the job's file ``name`` from ``offset``, at most ``limit`` of them
        (None when missing); UnsafeEntry for a link."""
        return read_beneath(self.area, self._relative(name), offset, limit)

    def _write_json(self, record: dict[str, Any], owner: tuple[int, int] | None = None) -> None:
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        write_beneath(self.area, self._relative("job.json"), text.encode(), 0o644, owner)

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

    def create(
        self, record: dict[str, Any], script: str, owner: tuple[int, int] | None = None
    ) -> None:
        """Make the job's folder (``owner``: the (uid, gid) it is made for, with per-user
        accounts), every folder made relative to the one above, never through a link."""
        if owner is None:
            self.area.mkdir(parents=True, exist_ok=True)
        mode = 0o700 if owner is not None else 0o755
        make_folders_beneath(self.area, self.path.parent.name, owner, mode)
        make_folders_beneath(self.area, self._relative(""), owner, mode, exist_ok=False)
        # TensorBoard can open logs/ before the first step; tmp/ is the job's private TMPDIR
        for sub in ("replicas", "logs", "tmp"):
            make_folders_beneath(self.area, self._relative(sub), owner)
        write_beneath(self.area, self._relative("script.py"), script.encode(), 0o644, owner)
        self._write_json(record, owner)

    def read(self) -> dict[str, Any]:
        data = self.read_file("job.json")
        if data is None:
            raise FileNotFoundError(self.record_file)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise DamagedStateFile(self.record_file, str(e) or type(e).__name__) from None

    def damaged_record(self, owner: str, error: Exception) -> dict[str, Any]:
        """What a job list shows for a job whose job.json cannot be read."""
        when = os.lstat(self.path).st_mtime  # never where a link points
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

    def replace(self, record: dict[str, Any]) -> None:
        """Write ``record`` as the whole of job.json (its supervisor, when it was damaged)."""
        self._write_json(record)

    def progress_records(self) -> list[dict[str, Any]]:
        data = self.read_file(PROGRESS_FILE)
        if data is None:
            return []
        records = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
        return records

    def artifacts(self) -> dict[str, Any]:
        return {
            "job_dir": str(self.path),
            "model_dir": str(self.path / "model"),
            "log_dir": str(self.path / "logs"),
            "script": str(self.script_file),
            "figures": self.figures(),
        }

    def figures(self) -> list[str]:
        """The PNGs the job drew (plt.show() and figures left open), in order."""
        try:
            names = list_beneath(self.area, self._relative("figures"))
        except (UnsafeEntry, OSError):
            return []
        numbers = [n[len("figure-") : -len(".png")] for n in names if n.endswith(".png")]
        pngs = [f"figure-{n}.png" for n in sorted(int(x) for x in numbers if x.isdigit())]
        return [str(self.path / "figures" / n) for n in pngs]


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
    summary["history"] = [{"epoch": e, **m} for e, m in sorted(finished.items())]
    summary["epochs_done"] = len(finished)
    return summary
