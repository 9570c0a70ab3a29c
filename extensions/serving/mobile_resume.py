"""An optimization that runs as a job picks up where it was stopped: a restarted job (a
node lost, kill -9, a preemption) reuses the variants it had built and measured, and resumes
each fine-tuning from its last epoch's checkpoint (Keras' BackupAndRestore).

Only in a job's own folder (``<job>/mobile/``, new for each job), so that nothing of another
run with other settings or data is ever taken for this one's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..atomic import write_json
from .mobile_report import Variant

DONE = ".variants"  # <name>.json: a variant built and measured
CHECKPOINTS = ".checkpoints"  # <kind>/: a fine-tuning's last epoch


def resumable(folder: Path) -> bool:
    """Whether ``folder`` is inside the job this process runs as."""
    job = os.environ.get("HUBFORGE_JOB_DIR")
    if not job:
        return False
    return Path(job).resolve() in Path(folder).resolve().parents


def done_before(folder: Path, name: str) -> Variant | None:
    """The variant this job built before it was restarted, when its file is still as it
    was measured."""
    try:
        kept = json.loads((folder / DONE / f"{name}.json").read_text())
        variant = Variant(**kept)
        intact = Path(variant.path).stat().st_size == variant.size_bytes
    except (OSError, ValueError, TypeError):
        return None
    return variant if intact and Path(variant.path).parent == folder else None


def keep(folder: Path, variant: Variant) -> None:
    write_json(folder / DONE / f"{variant.name}.json", asdict(variant))


def fit_callbacks(folder: Path, kind: str, epochs: int) -> list:
    """BackupAndRestore in ``<folder>/.checkpoints/<kind>`` and a line per epoch in the
    job's log ("pruned: epoch 3/10"); says so when it resumes."""
    import tf_keras

    backup = folder / CHECKPOINTS / kind
    if backup.is_dir() and any(backup.iterdir()):
        print(f"{kind}: resuming the fine-tuning from its last checkpoint", flush=True)

    def said(epoch: int, logs: Any = None) -> None:
        print(f"{kind}: epoch {epoch + 1}/{epochs}", flush=True)

    return [
        tf_keras.callbacks.BackupAndRestore(str(backup)),
        tf_keras.callbacks.LambdaCallback(on_epoch_end=said),
    ]
