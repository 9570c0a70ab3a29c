"""The labeling API: Label Studio projects from your data area, with label-studio-sdk 2.x.

    project = labeling.create_project("pets", "datasets/pets", ["cat", "dog"])
    project.progress           # {"labeled": 12, "total": 50, "per_label": {"cat": 7, ...}}
    task = project.next_item()  # Label Studio's own next-task (two users never get the same)
    project.annotate(task["id"], "cat")
    project.export("JSON")     # a file under your data area's labeling/ folder

Inside a hub your Label Studio account is provisioned by the hubforge service; outside one,
set HUBFORGE_LABEL_STUDIO_URL and HUBFORGE_LABEL_STUDIO_TOKEN.

This module is the public face: the rest lives in connection (credentials, clients, sharing),
configs, files, journal, project, predictions and exports, and is re-exported here.
"""

from __future__ import annotations

from typing import Any

from .configs import TASKS, label_config
from .configs import _box as _box
from .configs import _done as _done
from .configs import _labels_in as _labels_in
from .configs import _labels_of as _labels_of
from .configs import _plain as _plain
from .configs import _task_of as _task_of
from .connection import (
    STARTING_WAIT,
    client,
    close_clients,
    credentials,
    data_root,
    share,
    shares,
    unshare,
)
from .connection import _account as _account
from .connection import _service as _service
from .connection import _unavailable as _unavailable
from .connection import _waiting_for_label_studio as _waiting_for_label_studio
from .errors import LabelingError, LabelStudioDown
from .exports import EXPORTS
from .files import IMAGE_SUFFIXES, IMPORT_MAX_BYTES, IMPORT_MAX_TASKS, TEXT_SUFFIXES
from .files import _batches as _batches
from .files import _collect as _collect
from .files import _files as _files
from .files import _image_size as _image_size
from .journal import Journal, journal
from .predictions import _call_model as _call_model
from .project import ImportReport, Project

__all__ = [
    "EXPORTS",
    "IMAGE_SUFFIXES",
    "IMPORT_MAX_BYTES",
    "IMPORT_MAX_TASKS",
    "STARTING_WAIT",
    "TASKS",
    "TEXT_SUFFIXES",
    "ImportReport",
    "Journal",
    "LabelStudioDown",
    "LabelingError",
    "Project",
    "client",
    "close_clients",
    "create_project",
    "credentials",
    "data_root",
    "journal",
    "label_config",
    "list_projects",
    "open_project",
    "share",
    "shares",
    "unshare",
]


def _find(ls: Any, name: str) -> Any | None:
    for raw in ls.projects.list(title=name):
        if raw.title == name:
            return raw
    return None


def create_project(
    name: str,
    source: Any,
    labels: list[str],
    task: str = "image-classification",
    shuffle: bool = True,
    seed: int = 0,
) -> Project:
    """Create project ``name`` (or reuse it) and import every item of ``source``; re-running
    adds only new items. ``project.last_import`` says what was added and skipped. Items are
    queued in an order shuffled with ``seed`` (``shuffle=False``: the source's order)."""
    if not isinstance(name, str) or not 3 <= len(name.strip()) <= 50:
        raise LabelingError(f"name={name!r}: a project name of 3 to 50 characters")
    config = label_config(task, list(labels))
    ls = client()
    raw = _find(ls, name)
    if raw is None:
        raw = ls.projects.create(title=name, label_config=config)
    elif _task_of(raw.label_config) != task or _labels_of(raw.label_config) != list(labels):
        raise LabelingError(
            f"Project {name!r} exists with task {_task_of(raw.label_config)} and labels "
            f"{_labels_of(raw.label_config)}: open_project({name!r}) or choose another name"
        )
    project = Project(raw, ls)
    project.last_import = project.import_items(source, shuffle=shuffle, seed=seed)
    return project


def open_project(name: str, owner: str | None = None) -> Project:
    """Your project ``name``, or ``owner``'s when they shared their projects with you."""
    ls = client(owner)
    raw = _find(ls, name)
    if raw is None:
        names = [p.name for p in list_projects(owner)]
        whose = f"{owner}'s" if owner else "yours"
        raise LabelingError(f"No project {name!r}; {whose}: {names or 'none yet'}")
    project = Project(raw, ls)
    project.owner = owner
    return project


def list_projects(owner: str | None = None) -> list[Project]:
    """Your projects, or ``owner``'s shared ones."""
    ls = client(owner)
    projects = [Project(raw, ls) for raw in ls.projects.list()]
    for project in projects:
        project.owner = owner
    return projects
