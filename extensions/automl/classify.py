"""A classifier from a labeling project with no code (#34): ``classify(project)``.

It freezes the project's labeled items (image or text) and a reproducible train/validation
split into a generated notebook (``~/automl/<name>/classifier.ipynb``: open it to see or
change what runs), then searches its parameters with :func:`hubforge.jobs.tune`: every
trial a job that trains a small CNN or text model, or a head on a team base model that fits,
and reports its validation accuracy. The best trial's report (accuracy per class, confusion
matrix, the items it gets wrong, size and latency) is a page: ``report().html_path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jobs.api import data_root
from ..jobs.errors import JobError
from .base_models import BaseModel, base_models, get_base_model
from .classifier_job import REPORT

KINDS = {"image-classification": "image", "text-classification": "text"}
MIN_PER_CLASS = 2
SPACE = {
    "learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
    "units": [16, 32, 64, 128],
    "dropout": {"min": 0.0, "max": 0.5},
}


class ClassifyError(ValueError):
    """A request classify() cannot take; the message says what to change."""


class NoSuchClassification(ClassifyError):
    """No classify() run of that name in your home."""


@dataclass
class ClassifierReport:
    """How the best trial's model does on the validation items."""

    classes: list[str]
    accuracy: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]  # rows: the label, columns: what the model said
    wrong: list[dict[str, Any]]  # item, label, predicted, confidence; most confident first
    size_bytes: int
    latency_ms: float
    params: dict[str, Any]
    job: str
    model_dir: str
    kind: str
    base_model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    html_path: Path | None = None

    def _repr_html_(self) -> str:
        from .report_page import render

        return render(self, embed=True)


def _project(project: Any, owner: str | None) -> Any:
    if isinstance(project, str):
        from ..labeling import open_project

        return open_project(project, owner)
    if not hasattr(project, "labeled_items"):
        raise ClassifyError("project: a labeling project or its name")
    return project


def _side(key: str, seed: int, validation_fraction: float) -> str:
    """The same item always lands on the same side (as Project.to_tf_dataset splits)."""
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    validation = int.from_bytes(digest[:4], "big") / 2**32 < validation_fraction
    return "validation" if validation else "train"


def _items(project: Any, seed: int, validation_fraction: float) -> list[dict[str, str]]:
    items = [
        {"item": key, "label": label, "split": _side(key, seed, validation_fraction)}
        for key, label in project.labeled_items()
    ]
    counts = Counter(i["label"] for i in items)
    short = [c for c in project.labels if counts[c] < MIN_PER_CLASS]
    if len([c for c in project.labels if counts[c]]) < 2 or short:
        have = ", ".join(f"{c}: {counts[c]}" for c in project.labels)
        raise ClassifyError(
            f"{project.name}: label at least {MIN_PER_CLASS} items of every class first "
            f"(labeled now: {have})"
        )
    sides = Counter(i["split"] for i in items)
    if not sides["validation"] or not sides["train"]:  # a handful of items: move one over
        lonely = "train" if not sides["train"] else "validation"
        items[0]["split"] = lonely
    return items


def _fits(entry: BaseModel) -> bool:
    size = entry.input_size
    return len(size) == 3 and size[2] == 3


def _base(base_model: str | bool | None, kind: str) -> BaseModel | None:
    """The base model asked for; with None, the first image base model that fits."""
    if base_model is False or base_model == "" or kind != "image":
        if base_model and kind != "image":
            raise ClassifyError("base_model: base models are for image projects")
        return None
    if base_model is None:
        return next((e for e in base_models() if _fits(e)), None)
    entry = get_base_model(str(base_model))
    if not _fits(entry):
        raise ClassifyError(
            f"base_model {entry.name}: takes inputs of shape {list(entry.input_size)}; "
            "classify needs a model of colour images (height, width, 3)"
        )
    return entry


def _name(project: Any, name: str | None) -> str:
    if name is None:
        slug = re.sub(r"[^a-z0-9-]+", "-", project.name.lower()).strip("-") or "project"
        name = f"{slug[:40]}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
        raise ClassifyError(f"name {name!r}: lower-case letters, digits, '-' and '_'")
    return name


def _notebook(data: dict[str, Any], epochs: int, base: bool) -> Any:
    import nbformat

    cells = nbformat.v4
    params = "learning_rate = 0.001\nunits = 64\ndropout = 0.2\n" + f"epochs = {epochs}\n"
    if base:
        params += "unfreeze = 0  # the base model's top layers trained in the second half\n"
    run = (
        "report = classifier_job.train(data, learning_rate=learning_rate, units=units, "
        f"dropout=dropout, epochs=epochs{', unfreeze=unfreeze' if base else ''})\n"
        "print(f\"validation accuracy {report['accuracy']:.3f}\")"
    )
    about = (
        f"# A classifier for the labeling project *{data['project']}*\n"
        f"Made by `hubforge.automl.classify`: {len(data['items'])} labeled items "
        f"({data['kind']}), classes {', '.join(data['classes'])}; "
        + (f"a head on the base model `{data['base_model']}`." if base else "a small model.")
    )
    nb = cells.new_notebook(
        cells=[
            cells.new_markdown_cell(about),
            cells.new_code_cell(params, metadata={"tags": ["parameters"]}),
            cells.new_code_cell(
                "import json\nfrom hubforge.automl import classifier_job\n"
                f"data = json.loads({json.dumps(json.dumps(data))})"
            ),
            cells.new_code_cell(run),
        ]
    )
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def _new_folder(name: str) -> Path:
    folder = _home_runs() / name
    if folder.exists():
        raise ClassifyError(f"{folder} exists: give another name")
    folder.mkdir(parents=True)
    return folder


def _check_numbers(validation_fraction: float, epochs: int, image_size: int) -> None:
    if not 0 < validation_fraction < 1:
        raise ClassifyError("validation_fraction: between 0 and 1, e.g. 0.2")
    if not (isinstance(epochs, int) and 1 <= epochs <= 1000):
        raise ClassifyError("epochs: a whole number from 1 to 1000")
    if not (isinstance(image_size, int) and 8 <= image_size <= 512):
        raise ClassifyError("image_size: a whole number of pixels from 8 to 512")


def classify(
    project: Any,
    base_model: str | bool | None = None,
    max_trials: int = 6,
    parallel: int = 2,
    workers: int = 1,
    gpus_per_worker: int = 0,
    epochs: int = 10,
    image_size: int = 32,
    validation_fraction: float = 0.2,
    seed: int = 0,
    owner: str | None = None,
    name: str | None = None,
    space: dict[str, Any] | None = None,
) -> Classification:
    """Search for a classifier of ``project``'s labeled items; returns at once (like
    ``tune``): ``.wait()``, ``.trials``, ``.best``, ``.report()``, ``.deploy()``.
    ``base_model``: a team base model's name, False for none, None for the first one that
    takes colour images (image projects). ``owner``: a teammate who shared the project.
    ``space``: the parameters to search, as ``tune`` takes them (default: learning_rate,
    units, dropout, and unfreeze with a base model)."""
    from ..jobs.tuning_api import tune

    _check_numbers(validation_fraction, epochs, image_size)
    project = _project(project, owner)
    kind = KINDS.get(project.task)
    if kind is None:
        raise ClassifyError(
            f"{project.name} is a {project.task} project: classify takes image or text "
            "classification projects"
        )
    entry = _base(base_model, kind)
    name = _name(project, name)
    data = {
        "project": project.name,
        "owner": project.owner or "",
        "kind": kind,
        "classes": list(project.labels),
        "base_model": entry.name if entry else "",
        "image_size": list(entry.input_size[:2]) if entry else [image_size, image_size],
        "items": _items(project, seed, validation_fraction),
        "seed": seed,
    }
    folder = _new_folder(name)
    notebook = folder / "classifier.ipynb"
    notebook.write_text(json.dumps(_notebook(data, epochs, entry is not None), indent=1))
    if space is None:
        space = dict(SPACE, **({"unfreeze": [0, 2, 4]} if entry else {}))
    try:
        tuning = tune(notebook, space, "val_accuracy", max_trials, parallel, "bayesian",
                      workers, gpus_per_worker, name=name)  # fmt: skip
    except BaseException as e:  # nothing left behind that looks like a run
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(e, JobError):
            raise ClassifyError(str(e)) from None
        raise
    keys = ("project", "owner", "kind", "classes", "base_model", "image_size")
    record = dict({key: data[key] for key in keys}, name=name, tuning=tuning.id)
    _write_json(folder / "classify.json", record)
    return Classification(record, folder, tuning)


class Classification:
    """One classify() run: its ``tuning`` (trials are jobs) and where its files are."""

    def __init__(self, record: dict[str, Any], folder: Path, tuning: Any):
        self.record, self.folder, self.tuning = record, folder, tuning
        self.name: str = record["name"]
        self.classes: list[str] = record["classes"]

    def __repr__(self) -> str:
        return f"<Classification {self.name} {self.tuning.state}>"

    state = property(lambda self: self.tuning.state)
    trials = property(lambda self: self.tuning.trials)
    best = property(lambda self: self.tuning.best)
    notebook = property(lambda self: self.folder / "classifier.ipynb")

    def wait(self, timeout: float | None = None) -> Classification:
        self.tuning.wait(timeout)
        return self

    def cancel(self) -> Classification:
        self.tuning.cancel()
        return self

    def report(self) -> ClassifierReport:
        """The best trial's report, written as a page to ``<folder>/report.html``."""
        from .report_page import render

        best = self.best
        if best is None or best.job is None:
            raise ClassifyError(f"{self.name}: no trial has finished yet ({self.state})")
        job = best.job
        path = Path(job.artifacts["job_dir"]) / REPORT
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ClassifyError(f"{self.name}: the best trial wrote no report ({e})") from None
        fields = ClassifierReport.__dataclass_fields__
        known = {f for f in fields if f not in ("extra", "html_path")}
        report = ClassifierReport(
            **{k: raw[k] for k in known if k in raw and k not in ("job", "model_dir")},
            job=job.id,
            model_dir=job.artifacts["model_dir"],
            extra={k: v for k, v in raw.items() if k not in known},
        )
        page = self.folder / "report.html"
        tmp = page.with_name(".report.html.tmp")
        tmp.write_text(render(report, title=self.name))
        os.replace(tmp, page)
        report.html_path = page
        return report

    def deploy(self, name: str | None = None) -> Any:
        """Serve the best trial's model (a TF Serving REST endpoint)."""
        from ..serving import deploy

        report = self.report()
        return deploy(report.model_dir, name=name or self.name[:40])

    def prelabel(self, endpoint: Any = None) -> int:
        """The best model's guess for every item of the project not labeled yet (Label
        Studio predictions with scores: the label widget shows the least sure first).
        ``endpoint``: ask this deployed endpoint instead of loading the model here."""
        report = self.report()
        project = _project(self.record["project"], self.record["owner"] or None)
        model = endpoint if endpoint is not None else _saved_model(report.model_dir)
        size = tuple(self.record["image_size"]) if report.kind == "image" else None
        return project.preannotate(model, image_size=size)


def _saved_model(model_dir: str) -> Any:
    """A function from a batch to class probabilities: the exported model's serving
    signature (whatever Keras this process has)."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    name = next(iter(serve.structured_input_signature[1]))

    def predict(batch: Any) -> Any:
        if isinstance(batch[0], str):
            values = tf.constant(list(batch))
        else:
            values = tf.constant(np.asarray(batch, "float32"))
        (out,) = serve(**{name: values}).values()
        return out.numpy()

    return predict


def open_classification(name: str) -> Classification:
    """A classify() run started earlier (in another kernel, say) by its name."""
    from ..jobs.tuning_api import get_tuning

    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
        raise NoSuchClassification(f"No classify run {name!r}: names are like pets-20261205")
    folder = _home_runs() / name
    try:
        record = json.loads((folder / "classify.json").read_text())
    except (OSError, ValueError):
        raise NoSuchClassification(f"No classify run {name!r} in {folder.parent}") from None
    return Classification(record, folder, get_tuning(record["tuning"]))


def _home_runs() -> Path:
    return Path(os.environ.get("HOME") or Path.home()) / "automl"


def list_classifications() -> list[dict[str, Any]]:
    """Your classify() runs, newest first: what classify.json keeps, with the search's
    ``state`` and ``best_objective`` (None before a trial reported one)."""
    from ..jobs.tuning_api import list_tunings

    records = []
    for path in _home_runs().glob("*/classify.json"):
        try:
            records.append((path.stat().st_mtime, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # half-written or not one of ours: not listed
    tunings = {t.id: t.record for t in list_tunings()} if records else {}
    out = []
    for _, record in sorted(records, key=lambda r: -r[0]):
        tuning = tunings.get(record.get("tuning"), {})
        best = next((t for t in tuning.get("trials", []) if t["id"] == tuning.get("best")), {})
        out.append(
            dict(record, state=tuning.get("state", "unknown"), best_objective=best.get("objective"))
        )
    return out


def thumbnail(key: str, size: int = 64) -> str | None:
    """A data: URL of the image ``key`` (relative to the team data), for the report page."""
    import base64
    import io

    try:
        from PIL import Image

        with Image.open(data_root() / key) as image:
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.convert("RGB").save(out, "PNG")
    except (ImportError, OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
