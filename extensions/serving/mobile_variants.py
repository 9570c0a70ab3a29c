"""The variants ``serving.optimize`` can make of a model, and the check of a list of them:
apart from :mod:`hubforge.serving.mobile` so that the ``hubforge`` command builds its
``serve optimize`` parser without importing NumPy and the rest of serving."""

from __future__ import annotations

from typing import Any

from .errors import BadRequest

VARIANTS = (
    "float",
    "dynamic",
    "int8",
    "pruned",
    "clustered",
    "qat",
    "pruned-int8",
    "clustered-int8",
)
DEFAULT_VARIANTS = ("float", "dynamic", "int8", "pruned-int8")


def check_variants(variants: Any) -> list[str]:
    """The variants asked for (a list, or names separated by commas), each once, in order;
    BadRequest names the known ones when a name is not one of them."""
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    if not isinstance(variants, list | tuple) or not variants:
        raise BadRequest(f"variants: a list of names from {', '.join(VARIANTS)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise BadRequest(f"variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(variants))
