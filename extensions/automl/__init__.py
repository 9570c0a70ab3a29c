"""AutoML (#34): the team's base models (:mod:`.base_models`) and transfer learning from them
(:mod:`.transfer`), and a classifier from a labeling project with no code (:mod:`.classify`).
Searches over a notebook's parameters are :func:`hubforge.jobs.tune`."""

from .base_models import (
    BaseModel,
    BaseModelError,
    add_base_model,
    base_models,
    get_base_model,
    remove_base_model,
)
from .classify import (
    Classification,
    ClassifierReport,
    ClassifyError,
    classify,
    open_classification,
)
from .transfer import FineTuned, fine_tune

__all__ = [
    "BaseModel",
    "BaseModelError",
    "Classification",
    "ClassifierReport",
    "ClassifyError",
    "FineTuned",
    "add_base_model",
    "base_models",
    "classify",
    "fine_tune",
    "get_base_model",
    "open_classification",
    "remove_base_model",
]
