"""Optimizations for phones as the sidebar and REST see them: submitted as jobs (not
waited for), listed with their progress and, once done, their report.

An optimization is a Hubforge job whose script is in the owner's ``~/.hubforge/optimize/``
(``mobile_job.submit_optimization`` writes it and a ``.json`` request beside it); its
folder's ``mobile/`` holds ``progress.json`` while it runs and ``report.json`` after.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import BadRequest, NotFound
from .mobile import DEFAULT_VARIANTS, _settings, check_variants, require_data
from .mobile_job import PROGRESS, SCRIPTS, submit_optimization, training_data_of
from .mobile_report import OptimizationReport

MAX_FILE = 4 * 1024 * 1024  # a report or request bigger than this is not one optimize wrote


def submit(
    source: Any,
    variants: Any = DEFAULT_VARIANTS,
    data: Any = None,
    *,
    origin: dict[str, str],
    gpus: int = 0,
    **settings: Any,
) -> Any:
    """Check everything a job would trip on, then submit it: the Job (see mobile.optimize
    for the settings; ``data`` None: the job's own training data)."""
    wanted = check_variants(variants)
    from .api import model_dir_of
    from .tflite import resolve_model_dir

    if isinstance(source, str | os.PathLike) or getattr(source, "artifacts", None) is not None:
        resolve_model_dir(model_dir_of(source))  # 400 now, not a failed job later
    if data is None:
        data = training_data_of(source)
    require_data(data)
    if isinstance(data, str | os.PathLike) and not Path(data).exists():
        raise BadRequest(f"data={os.fspath(data)!r}: no such folder or .npz file")
    checked = _settings(
        settings.pop("max_accuracy_loss", 1.0),
        settings.pop("min_agreement", 0.9),
        settings.pop("sparsity", 0.5),
        settings.pop("clusters", 16),
        settings.pop("epochs", 2),
        settings.pop("batch_size", 32),
    )
    if settings:
        raise BadRequest(f"unknown settings {sorted(settings)}")
    asked = {"variants": wanted, **checked, "validation_split": 0.2, "runs": 200}
    return submit_optimization(source, data, asked, gpus, origin)


def _scripts() -> Path:
    return Path(os.environ.get("HOME") or Path.home()).joinpath(*SCRIPTS)


def is_optimization(job: Any) -> bool:
    source = (job.record.get("spec") or {}).get("source") or ""
    return Path(source).parent == _scripts()


def _small_json(path: Path) -> Any:
    """A JSON file this user wrote, or None when it is absent, too big or damaged."""
    try:
        with path.open("rb") as f:
            content = f.read(MAX_FILE + 1)
        return None if len(content) > MAX_FILE else json.loads(content)
    except (OSError, ValueError):
        return None


def view(job: Any, full: bool = False) -> dict[str, Any]:
    """What the sidebar shows of one optimization (``full``: with the snippets)."""
    record = job.record
    folder = Path(job.artifacts["job_dir"]) / "mobile"
    request = _small_json(Path(record["spec"]["source"]).with_suffix(".json")) or {}
    found: dict[str, Any] = {
        "job": job.id,
        "name": record["spec"].get("name"),
        "state": job.status,
        "reason": job.reason,
        "created": record.get("created"),
        "origin": request.get("origin"),
        "variants": request.get("variants"),
        "folder": str(folder),
        "progress": _small_json(folder / PROGRESS) if job.status == "running" else None,
        "report": None,
    }
    if (folder / "report.json").is_file() and _small_json(folder / "report.json") is not None:
        report = OptimizationReport.load(folder / "report.json")
        found["report"] = _report_view(report)
        if full and report.chosen is not None:
            found["snippets"] = report.snippets()
    return found


def _report_view(report: OptimizationReport) -> dict[str, Any]:
    summary = report.to_dict()
    return {
        "rows": report.rows(),
        "variants": summary["variants"],
        "chosen": summary["chosen"],
        "baseline_accuracy": report.baseline_accuracy,
        "samples": report.samples,
        "summary": report._summary(),
        "plot": str(Path(report.folder) / "accuracy-vs-size.png"),
    }


def list_optimizations() -> list[dict[str, Any]]:
    """This user's optimizations, newest first."""
    from .. import jobs

    found = [view(job) for job in jobs.list_jobs() if is_optimization(job)]
    return sorted(found, key=lambda o: o.get("created") or 0, reverse=True)


def get_optimization(job_id: str) -> dict[str, Any]:
    from .. import jobs

    job = jobs.get(job_id)
    if not is_optimization(job):
        raise NotFound(f"job {job_id} is not an optimization for phones")
    return view(job, full=True)
