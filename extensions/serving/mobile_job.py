"""``serving.optimize`` as a Hubforge job: in the workbench's queue, with the GPUs it asks
for, as its owner, its progress in the job's log; the report comes back to the caller.

What the job needs goes to the owner's area first (a model in memory is saved, arrays are
written as an ``.npz``); the job runs a small script from the owner's home folder
(``~/.hubforge/optimize/``) that calls ``optimize(..., run="here")`` with the job's folder
as output (``<job>/mobile/``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json
from ..distribute import TRAINING_DATA
from .errors import BadRequest, ServingError
from .mobile_report import OptimizationReport

SCRIPT = '''"""Made by hubforge.serving.optimize: the variants of a model for phones, as a job."""
from hubforge.serving.mobile_job import run_in_job

run_in_job({settings!r})
'''
SCRIPTS = (".hubforge", "optimize")  # under the owner's home: the jobs' scripts and requests
PROGRESS = "progress.json"  # in <job>/mobile/: [step, total, what] as the job goes


def in_workbench() -> bool:
    """Whether jobs can be submitted from here (a user's server or a terminal of it)."""
    return bool(os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("HUBFORGE_USER_AREA"))


def _staging() -> Path:
    area = os.environ.get("HUBFORGE_USER_AREA")
    if not area:
        raise BadRequest("run='job' needs a workbench (a user's server): run='here' instead")
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder = Path(area) / "mobile-inputs" / stamp
    folder.mkdir(parents=True, mode=0o700)
    return folder


def _source_path(source: Any, staging: Path) -> str:
    import tf_keras

    if isinstance(source, tf_keras.Model):
        path = staging / "model" / "1"
        source.save(str(path))
        return str(path.parent)
    from .api import model_dir_of

    return os.fspath(model_dir_of(source))


def _data_path(data: Any, staging: Path) -> Any:
    if data is None or isinstance(data, str | os.PathLike):
        return None if data is None else os.path.abspath(os.fspath(data))
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
    elif hasattr(data, "as_numpy_iterator"):
        from .mobile import _from_dataset

        x, y = _from_dataset(data)
    else:
        raise BadRequest(f"data: (x, y) arrays, a tf.data.Dataset or a folder, not {data!r:.60}")
    path = staging / "data.npz"
    np.savez(path, x=np.asarray(x, dtype="float32"), y=np.asarray(y))
    return str(path)


def submit_optimization(
    source: Any, data: Any, settings: dict[str, Any], gpus: int, origin: dict[str, str]
) -> Any:
    """Stage what the job needs and submit it (not waiting): the Hubforge job. ``origin``
    says what was optimized, for the views ({"job": id}, {"endpoint": name} or {"model": dir})."""
    from .. import jobs

    staging = _staging()
    body = {"source": _source_path(source, staging), "data": _data_path(data, staging)}
    body |= settings
    home = Path(os.environ.get("HOME") or Path.home())
    scripts = home.joinpath(*SCRIPTS)
    scripts.mkdir(parents=True, exist_ok=True)
    script = scripts / f"optimize-{staging.name}.py"
    request = {"origin": origin, "variants": settings.get("variants"), "data": body["data"]}
    write_json(script.with_suffix(".json"), request | {"source": body["source"]})
    script.write_text(SCRIPT.format(settings=json.dumps(body)))
    return jobs.submit(script, gpus_per_worker=gpus, name=_job_name(origin, body["source"]))


def _job_name(origin: dict[str, str], source: str) -> str:
    """optimize-<the job, the endpoint or the model folder's name>, as a job name allows."""
    label = origin.get("job") or origin.get("endpoint") or ""
    if not label:
        path = Path(source)
        label = path.parent.name if path.name.isdigit() else path.name
    slug = re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")
    return f"optimize-{slug}"[:40].strip("-")


def optimize_as_job(
    source: Any, data: Any, settings: dict[str, Any], gpus: int, wait_timeout: float | None
) -> OptimizationReport:
    """Submit the job, wait for it, and read its report (ServingError with the job's reason
    when it fails)."""
    job = submit_optimization(source, data, settings, gpus, origin_of(source))
    print(f"Optimizing for phones as job {job.id} (its log shows each variant)", flush=True)
    state = job.wait(timeout=wait_timeout)
    if state != "succeeded":
        tail = "\n".join(str(job.logs()).splitlines()[-15:])
        raise ServingError(f"Job {job.id} {state}: {job.reason or 'see its log'}\n{tail}")
    report = OptimizationReport.load(Path(job.artifacts["job_dir"]) / "mobile" / "report.json")
    report.job = job.id
    return report


def origin_of(source: Any) -> dict[str, str]:
    if getattr(source, "artifacts", None) is not None and getattr(source, "id", None):
        return {"job": source.id}
    if isinstance(source, str | os.PathLike):
        return {"model": os.fspath(source)}
    return {"model": "a Keras model in memory"}


def run_in_job(settings_json: str) -> None:
    """The job's body: optimize here into ``<job>/mobile/``, its progress in the log and in
    ``progress.json`` (the sidebar's bar)."""
    from .mobile import optimize

    settings = json.loads(settings_json)
    source, data = settings.pop("source"), settings.pop("data")
    output = Path(os.environ["HUBFORGE_JOB_DIR"]) / "mobile"
    output.mkdir(parents=True, exist_ok=True)

    def progress(step: int, total: int, what: str) -> None:
        print(f"[{step}/{total}] {what}", flush=True)
        write_json(output / PROGRESS, {"step": step, "total": total, "what": what})

    report = optimize(source, data=data, run="here", output=output, progress=progress, **settings)
    print(report.table())


def training_data_of(source: Any) -> str | None:
    """The data a job kept with ``hubforge.distribute.save_training_data`` (None if none)."""
    artifacts = getattr(source, "artifacts", None)
    if not isinstance(artifacts, dict) or not artifacts.get("job_dir"):
        return None
    path = Path(artifacts["job_dir"]) / TRAINING_DATA
    return str(path) if path.is_file() else None
