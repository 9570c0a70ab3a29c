"""Serving: TensorFlow-Serving-compatible REST endpoints for exported models."""

from .api import Endpoint, deploy, get, list_endpoints, model_dir_of
from .errors import BadRequest, NotFound, ServingError
from .mobile import optimize
from .mobile_report import OptimizationReport
from .tflite import TFLiteReport, export_tflite

list = list_endpoints

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
