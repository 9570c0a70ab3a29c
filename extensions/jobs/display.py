"""Text views of a job's progress, shared by the CLI and the widget."""

from __future__ import annotations

from typing import Any


def bar(done: float, total: float, width: int = 24) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_line(state: str, progress: dict[str, Any]) -> str:
    """One line: epoch, a bar over all steps, the latest metrics, the state."""
    epochs, steps = progress.get("epochs"), progress.get("steps")
    epoch, step = progress.get("epoch"), progress.get("step") or 0
    if epochs is None or epoch is None:
        if state == "queued":
            return "queued: waiting for capacity (it starts by itself)"
        if state in ("failed", "cancelled", "damaged"):
            return f"{state} before the first training step"
        if state == "succeeded":
            return "succeeded (no training steps reported)"
        return f"{state}: waiting for the first training step"
    done = progress.get("epochs_done", 0) if state == "succeeded" else epoch
    total_steps = epochs * (steps or 1)
    current = epochs * (steps or 1) if state == "succeeded" else done * (steps or 1) + step
    metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(progress.get("metrics", {}).items()))
    shown = min(epoch + 1, epochs)
    return f"epoch {shown}/{epochs} {bar(current, total_steps)} {metrics} ({state})".rstrip()
