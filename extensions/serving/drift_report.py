"""An endpoint's input drift as its owner reads it: ``Endpoint.drift(training_data)``."""

from __future__ import annotations

import html
from typing import Any


class DriftReport:
    """``drifted`` (a feature's PSI over ``threshold``), ``psi_max``, ``worst_feature``,
    ``rows`` (logged rows compared) and ``features``: per feature its baseline and logged
    mean and spread, ``out_of_range`` share, ``psi`` and ``ks``."""

    def __init__(self, name: str, found: dict[str, Any]):
        self.name = name
        self.rows: int = found["rows"]
        self.features: list[dict[str, Any]] = found["features"]
        self.psi_max: float = found["psi_max"]
        self.worst_feature: int = found["worst_feature"]
        self.drifted: bool = found["drifted"]
        self.threshold: float = found["threshold"]

    def __repr__(self) -> str:
        state = "drifted" if self.drifted else "no drift"
        return f"<DriftReport {self.name}: {state}, PSI max {self.psi_max} ({self.rows} rows)>"

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("feature", "mean (train)", "mean", "out of range", "PSI")
        )
        rows = "".join(
            f"<tr><td>{f['feature']}</td><td>{f['baseline_mean']:.3g}</td><td>{f['mean']:.3g}"
            f"</td><td>{f['out_of_range']:.1%}</td><td>{f['psi']:.3f}</td></tr>"
            for f in self.features
        )
        title = html.escape(repr(self))
        return f"<div><b>{title}</b><table><tr>{head}</tr>{rows}</table></div>"

    def plot(self) -> Any:
        """A bar per feature: its PSI, the threshold as a line."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4, len(self.features) * 0.5), 3))
        colors = ["tab:red" if f["psi"] > self.threshold else "tab:blue" for f in self.features]
        ax.bar(
            [str(f["feature"]) for f in self.features],
            [f["psi"] for f in self.features],
            color=colors,
        )
        ax.axhline(self.threshold, color="gray", linestyle="--", label="threshold")
        ax.set_xlabel("feature")
        ax.set_ylabel("PSI")
        ax.set_title(f"{self.name}: inputs against the training data ({self.rows} rows)")
        ax.legend()
        return fig
