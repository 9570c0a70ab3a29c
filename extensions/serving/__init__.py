"""Serving: TensorFlow-Serving-compatible REST endpoints for exported models.

The names below are loaded on first use: ``import hubforge.serving.<module>`` (the CLI builds
its parsers from ``mobile``'s variant names at every run) does not import NumPy and every
other part of serving with it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import BadRequest, NotFound, ServingError

if TYPE_CHECKING:  # what the names are, for readers and type checkers
    from .api import Endpoint, deploy, get, list_endpoints, model_dir_of
    from .mobile import optimize
    from .mobile_report import OptimizationReport
    from .tflite import TFLiteReport, export_tflite

_WHERE = {
    "Endpoint": "api",
    "deploy": "api",
    "get": "api",
    "list_endpoints": "api",
    "model_dir_of": "api",
    "optimize": "mobile",
    "OptimizationReport": "mobile_report",
    "TFLiteReport": "tflite",
    "export_tflite": "tflite",
}


def __getattr__(name: str) -> Any:
    """``serving.deploy``, ``serving.list`` (= ``list_endpoints``) and the other names of
    ``__all__``, imported from their module the first time they are read; any other name
    is looked up as a submodule (``serving.tflite`` after ``import hubforge.serving``)."""
    asked = name
    if name == "list":
        name = "list_endpoints"
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[asked] = value  # read once: later reads find it here
    return value


def __dir__() -> list[str]:
    """Every public name, loaded or not (tab completion in a notebook lists them all)."""
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BadRequest",
    "Endpoint",
    "NotFound",
    "OptimizationReport",
    "ServingError",
    "TFLiteReport",
    "deploy",
    "export_tflite",
    "get",
    "list",
    "list_endpoints",
    "model_dir_of",
    "optimize",
]
