"""Input drift of an endpoint (#36): the rows its callers sent, feature by feature, against the
training data's. Per feature: mean and spread of both, the share of rows outside the training
data's range, the population stability index (PSI, on the training data's deciles) and the
two-sample Kolmogorov-Smirnov statistic (scipy). A PSI above 0.2 is the usual sign of a
shifted input; the feature with the largest decides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import BadRequest

BINS = 10  # deciles of the training data
PSI_ALERT = 0.2  # the usual threshold of a shifted population
MAX_ROWS = 5000  # rows of a baseline kept (a sample of larger training sets)
FLOOR = 1e-4  # an empty bin's share, so the PSI stays finite


def _matrix(rows: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(rows, dtype="float64")
    except (TypeError, ValueError):
        raise BadRequest(f"{what}: numbers, one row per example (rows of equal length)") from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or not array.size:
        raise BadRequest(f"{what}: a table of numbers (rows x features), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise BadRequest(f"{what}: has NaN or infinite values")
    return array


def baseline(data: Any, seed: int = 0) -> dict[str, Any]:
    """What is kept of the training data: per feature its decile edges, range, mean and
    spread, and a sample of its values (for the KS statistic)."""
    x = _matrix(data, "baseline")
    if len(x) > MAX_ROWS:
        x = x[np.random.default_rng(seed).choice(len(x), MAX_ROWS, replace=False)]
    return {
        "features": x.shape[1],
        "edges": np.quantile(x, np.linspace(0, 1, BINS + 1), axis=0).T.tolist(),
        "mean": x.mean(axis=0).tolist(),
        "std": x.std(axis=0).tolist(),
        "sample": x.T.tolist(),
    }


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    inner = np.unique(edges[1:-1])  # repeated edges (a constant feature) make empty bins
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
    return np.maximum(counts / max(1, len(values)), FLOOR)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def compare(rows: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The rows' drift against ``base`` (see module); ``drifted`` when a feature's PSI
    passes PSI_ALERT."""
    from scipy.stats import ks_2samp

    x = _matrix(rows, "the logged requests")
    if x.shape[1] != base["features"]:
        raise BadRequest(
            f"The logged rows have {x.shape[1]} features, the baseline {base['features']}: "
            "give the training data the endpoint's model takes"
        )
    features = []
    for i in range(x.shape[1]):
        edges = np.asarray(base["edges"][i])
        sample = np.asarray(base["sample"][i])
        values = x[:, i]
        features.append(
            {
                "feature": i,
                "baseline_mean": base["mean"][i],
                "mean": float(values.mean()),
                "baseline_std": base["std"][i],
                "std": float(values.std()),
                "out_of_range": float(np.mean((values < edges[0]) | (values > edges[-1]))),
                "psi": round(psi(_shares(sample, edges), _shares(values, edges)), 4),
                "ks": round(float(ks_2samp(sample, values).statistic), 4),
            }
        )
    worst = max(features, key=lambda f: f["psi"])
    return {
        "rows": len(x),
        "features": features,
        "psi_max": worst["psi"],
        "worst_feature": worst["feature"],
        "drifted": worst["psi"] > PSI_ALERT,
        "threshold": PSI_ALERT,
    }


def rows_of(request: Any) -> list | None:
    """The numeric rows of a logged predict body (row format ``instances`` of lists or
    numbers, or columnar ``inputs`` of one tensor); None for anything else."""
    if not isinstance(request, dict):
        return None
    rows = request.get("instances", request.get("inputs"))
    if not isinstance(rows, list) or not rows:
        return None
    first = rows[0]
    if isinstance(first, int | float) and not isinstance(first, bool):
        return [[r] for r in rows]
    if isinstance(first, list) and all(isinstance(v, int | float) for v in first):
        return rows
    return None
