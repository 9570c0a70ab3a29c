"""What a tuning run searches and for what: its space, objective and algorithm, checked
against the notebook's ``parameters`` cell (pure Python: the service checks a request before
any search process starts).

A space names parameters of the notebook and gives each a range or a list::

    {"learning_rate": {"min": 1e-4, "max": 1e-1, "log": True},   # floats, log scale
     "units": {"min": 8, "max": 64, "step": 8},                  # ints (both ends ints)
     "activation": ["relu", "tanh"]}                              # a choice
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import JobError

ALGORITHMS = {
    "random": "random search",
    "bayesian": "Bayesian optimisation (Gaussian process)",
    "hyperband": "Hyperband: many trials for a few epochs, only the best go on to more",
}
MAX_TRIALS = 200
MAX_EPOCHS = 1000
EPOCHS = "epochs"  # the notebook parameter Hyperband sets for each trial
MAX_PARALLEL = 16
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# metrics named like these are better when smaller
_SMALLER_IS_BETTER = re.compile(r"(loss|error|mse|mae|rmse|perplexity)$", re.I)


def check_space(space: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """The space, normalised (``{"type": "float"|"int"|"choice", ...}`` per name); JobError
    naming the parameter and what to write instead."""
    if not isinstance(space, dict) or not space:
        raise JobError(
            'space: give each parameter to tune a range or a list, e.g. {"learning_rate": '
            '{"min": 0.0001, "max": 0.1, "log": true}, "units": [16, 32, 64]}'
        )
    known = ", ".join(sorted(defaults)) or "none (tag a cell 'parameters')"
    found: dict[str, Any] = {}
    for name, entry in space.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name not in defaults:
            raise JobError(f"space: {name!r} is not a parameter of the notebook; its are: {known}")
        found[name] = _dimension(name, entry, defaults[name])
    return found


def _dimension(name: str, entry: Any, default: Any) -> dict[str, Any]:
    if isinstance(entry, list):
        return _choice(name, entry, default)
    if not isinstance(entry, dict) or set(entry) - {"min", "max", "step", "log"}:
        raise JobError(
            f"space[{name!r}]: a list of values, or {{'min': …, 'max': …}} with optional "
            "'step' and 'log'"
        )
    low, high = entry.get("min"), entry.get("max")
    if not (_number(low) and _number(high)) or not low < high:
        raise JobError(f"space[{name!r}]: 'min' and 'max' are numbers with min < max")
    if isinstance(default, bool) or (default is not None and not _number(default)):
        raise JobError(f"space[{name!r}]: a range for a parameter whose default is {default!r}")
    log = entry.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise JobError(f"space[{name!r}]: 'log' is true or false, and a log scale needs min > 0")
    step = entry.get("step")
    ints = isinstance(low, int) and isinstance(high, int) and not isinstance(default, float)
    if step is not None and (
        not _number(step) or step <= 0 or (ints and not isinstance(step, int))
    ):
        raise JobError(f"space[{name!r}]: 'step' is a positive {'whole ' if ints else ''}number")
    kind = "int" if ints else "float"
    return {"type": kind, "min": low, "max": high, "step": step, "log": log}


def _choice(name: str, values: list, default: Any) -> dict[str, Any]:
    if not 1 <= len(values) <= 100 or len({repr(v) for v in values}) != len(values):
        raise JobError(f"space[{name!r}]: a list of 1 to 100 different values")
    kinds = {type(v) for v in values}
    if not (kinds <= {int} or kinds <= {int, float} or kinds <= {str} or kinds <= {bool}):
        raise JobError(f"space[{name!r}]: values of one kind (numbers, strings or true/false)")
    if default is not None and isinstance(default, bool) != isinstance(values[0], bool):
        raise JobError(f"space[{name!r}]: values like the default {default!r}")
    return {"type": "choice", "values": list(values)}


def check_objective(objective: Any) -> dict[str, str]:
    """``"val_accuracy"`` (bigger is better; ``*loss``/``*error`` smaller) or
    ``{"name": ..., "direction": "max"|"min"}``."""
    if isinstance(objective, str):
        objective = {"name": objective}
    if not isinstance(objective, dict) or set(objective) - {"name", "direction"}:
        raise JobError('objective: a metric name, or {"name": "val_loss", "direction": "min"}')
    name = objective.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise JobError(
            "objective: the name of a metric the notebook reports (a Keras history metric "
            "such as 'val_accuracy', or one given to hubforge.distribute.report)"
        )
    direction = objective.get("direction") or ("min" if _SMALLER_IS_BETTER.search(name) else "max")
    if direction not in ("max", "min"):
        raise JobError("objective direction: 'max' or 'min'")
    return {"name": name, "direction": direction}


def check_search(algorithm: Any, max_trials: Any, parallel: Any) -> None:
    if algorithm not in ALGORITHMS:
        choices = ", ".join(f"{k!r} ({v})" for k, v in ALGORITHMS.items())
        raise JobError(f"algorithm={algorithm!r}: one of {choices}")
    if not _whole(max_trials) or not 1 <= max_trials <= MAX_TRIALS:
        raise JobError(f"max_trials={max_trials!r}: a whole number from 1 to {MAX_TRIALS}")
    if not _whole(parallel) or not 1 <= parallel <= MAX_PARALLEL:
        raise JobError(f"parallel={parallel!r}: a whole number from 1 to {MAX_PARALLEL}")


def check_hyperband(
    max_epochs: Any, factor: Any, space: dict[str, Any], defaults: dict[str, Any]
) -> None:
    """Hyperband gives each trial its number of epochs: the notebook's ``epochs``
    parameter, which the space then leaves alone."""
    if EPOCHS not in defaults:
        raise JobError(
            "algorithm='hyperband' sets each trial's epochs: give the notebook's parameters cell "
            "an `epochs = 10` and train with model.fit(..., epochs=epochs)"
        )
    if EPOCHS in space:
        raise JobError("space: leave 'epochs' out with algorithm='hyperband', which sets it")
    if not _whole(max_epochs) or not 1 <= max_epochs <= MAX_EPOCHS:
        raise JobError(
            f"max_epochs={max_epochs!r}: the most epochs one trial trains with Hyperband, "
            f"a whole number from 1 to {MAX_EPOCHS}"
        )
    if not _whole(factor) or not 2 <= factor <= 10:
        raise JobError(
            f"factor={factor!r}: a whole number from 2 to 10 (each round keeps 1 trial in "
            "factor, for factor times the epochs; 3 is usual)"
        )


def hyperband_trials(max_epochs: int, factor: int) -> int:
    """How many trials one Hyperband iteration runs (keras-tuner's bracket sizes)."""
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    last = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(last / (b + 1) * factor ** (b - r)) for b in range(brackets) for r in range(b + 1)
    )


def objective_value(progress: dict[str, Any], objective: dict[str, str]) -> float | None:
    """The trial's result from its job's progress: the value given to
    ``distribute.report``, else the best epoch's (Keras history); None when it reported
    neither."""
    name = objective["name"]
    reported = (progress.get("reported") or {}).get(name)
    if _number(reported) and math.isfinite(reported):
        return float(reported)
    values = [
        float(h[name])
        for h in progress.get("history") or []
        if _number(h.get(name)) and math.isfinite(h[name])
    ]
    if not values:
        return None
    return max(values) if objective["direction"] == "max" else min(values)


def better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
