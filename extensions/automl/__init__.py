"""AutoML (#34): the team's base models (:mod:`.base_models`) and transfer learning from them
(:mod:`.transfer`).
Searches over a notebook's parameters are :func:`hubforge.jobs.tune`."""

from .base_models import (
    BaseModel,
    BaseModelError,
    add_base_model,
    base_models,
    get_base_model,
    remove_base_model,
)
from .transfer import FineTuned, fine_tune

__all__ = [
    "BaseModel",
    "BaseModelError",
    "FineTuned",
    "add_base_model",
    "base_models",
    "fine_tune",
    "get_base_model",
    "remove_base_model",
]
