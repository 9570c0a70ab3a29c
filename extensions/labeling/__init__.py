"""Labeling: Label Studio behind the workbench, a Python API over label-studio-sdk."""

from .api import (
    ImportReport,
    LabelingError,
    Project,
    create_project,
    label_config,
    list_projects,
    open_project,
    share,
    shares,
    unshare,
)

__all__ = [
    "ImportReport",
    "LabelingError",
    "Project",
    "create_project",
    "label_config",
    "list_projects",
    "open_project",
    "share",
    "shares",
    "unshare",
]
