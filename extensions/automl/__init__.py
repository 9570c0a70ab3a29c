"""AutoML (#34): the team's base models for transfer learning (:mod:`.base_models`).
Searches over a notebook's parameters are :func:`hubforge.jobs.tune`."""

from .base_models import (
    BaseModel,
    BaseModelError,
    add_base_model,
    base_models,
    get_base_model,
    remove_base_model,
)

__all__ = [
    "BaseModel",
    "BaseModelError",
    "add_base_model",
    "base_models",
    "get_base_model",
    "remove_base_model",
]
