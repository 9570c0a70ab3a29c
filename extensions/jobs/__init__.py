"""Notebook -> distributed TensorFlow job: ``submit``, ``get``, ``list`` and ``Job``.

Attributes load lazily, so the supervisor and worker processes (``python -m
hubforge.jobs.supervisor|runner``) start without importing the API's dependencies.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Job": "api",
    "get": "api",
    "list_jobs": "api",
    "submit": "api",
    "check": "api",
    "list": "api:list_jobs",
    "JobError": "errors",
    "JobNotFound": "errors",
    "JobSpec": "spec",
    "tune": "tuning_api",
    "get_tuning": "tuning_api",
    "list_tunings": "tuning_api",
    "Tuning": "tuning_api",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hubforge.jobs' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    return getattr(import_module(f"{__name__}.{module}"), attr or name)
