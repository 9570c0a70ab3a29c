"""Serving: TensorFlow-Serving-compatible REST endpoints for exported models."""

from .api import Endpoint, deploy, get, list_endpoints
from .errors import BadRequest, NotFound, ServingError

list = list_endpoints

__all__ = [
    "BadRequest",
    "Endpoint",
    "NotFound",
    "ServingError",
    "deploy",
    "get",
    "list",
    "list_endpoints",
]
