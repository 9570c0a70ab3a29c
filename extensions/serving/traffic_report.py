"""An endpoint's traffic as its owner reads it: ``Endpoint.traffic("1h")`` and
``hubforge serve traffic NAME`` (figures from the gateway, see serving.traffic)."""

from __future__ import annotations

import html
from typing import Any

SPARK = " ▁▂▃▄▅▆▇█"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def sparkline(values: list[float | None]) -> str:
    """One character per value, taller for larger ones (a blank where there is none)."""
    known = [v for v in values if v is not None]
    top = max(known, default=0) or 1
    return "".join(
        " " if v is None else SPARK[max(1, round(v / top * (len(SPARK) - 1)))] if v else "▁"
        for v in values
    )


class TrafficReport:
    """Totals of the window (``requests``, ``rps``, ``errors``, ``error_rate`` (5xx share),
    ``p50_ms``/``p90_ms``/``p99_ms``, ``by_status``, ``by_version``, ``model_calls`` and
    ``batch_size``: the mean rows per model call, None where the service cannot read it)
    and ``series``: one dict per step (``t``, the same figures)."""

    def __init__(self, summary: dict[str, Any]):
        self.summary = summary
        totals = summary["totals"]
        self.name: str = summary["name"]
        self.window_s: int = summary["window_s"]
        self.step_s: int = summary["step_s"]
        self.requests: int = totals["requests"]
        self.rps: float = totals["rps"]
        self.errors: int = totals["errors"]
        self.error_rate: float = totals["error_rate"]
        self.p50_ms: float | None = totals["p50_ms"]
        self.p90_ms: float | None = totals["p90_ms"]
        self.p99_ms: float | None = totals["p99_ms"]
        self.by_status: dict[str, int] = totals["by_status"]
        self.by_version: dict[str, int] = totals["by_version"]
        self.model_calls: int = totals.get("model_calls", 0)
        self.batch_size: float | None = totals.get("batch_size")
        self.series: list[dict[str, Any]] = summary["series"]

    def __repr__(self) -> str:
        return f"<TrafficReport {self.name} {self.requests} requests in {self.window_s} s>"

    def lines(self) -> list[str]:
        """What `hubforge serve traffic` prints."""
        statuses = ", ".join(f"{s}: {n}" for s, n in self.by_status.items()) or "none"
        versions = ", ".join(f"{v}: {n}" for v, n in self.by_version.items()) or "none"
        return [
            f"{self.name}: {self.requests} requests in the last {_span(self.window_s)} "
            f"({self.rps:g}/s), {self.errors} errors ({self.error_rate:.1%})",
            f"latency  p50 {_ms(self.p50_ms)}  p90 {_ms(self.p90_ms)}  p99 {_ms(self.p99_ms)}",
            f"status   {statuses}",
            f"version  {versions}",
            f"batches  {self.model_calls} model calls, "
            + (f"{self.batch_size:g} rows per call" if self.batch_size else "no rows counted"),
            f"requests/s  |{sparkline([s['rps'] for s in self.series])}|  "
            f"(one mark per {_span(self.step_s)}, oldest first)",
            f"p99         |{sparkline([s['p99_ms'] for s in self.series])}|",
        ]

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in (
                ("requests", f"{self.requests} ({self.rps:g}/s)"),
                ("errors (5xx)", f"{self.errors} ({self.error_rate:.1%})"),
                (
                    "latency",
                    f"p50 {_ms(self.p50_ms)}, p90 {_ms(self.p90_ms)}, p99 {_ms(self.p99_ms)}",
                ),
                ("by status", ", ".join(f"{s}: {n}" for s, n in self.by_status.items())),
                ("by version", ", ".join(f"{v}: {n}" for v, n in self.by_version.items())),
                (
                    "rows per model call",
                    f"{self.batch_size:g} ({self.model_calls} calls)" if self.batch_size else "-",
                ),
            )
        )
        title = f"{self.name}: the last {_span(self.window_s)}"
        return f"<div><b>{html.escape(title)}</b><table>{rows}</table></div>"

    def plot(self) -> Any:
        """A matplotlib figure: requests per second, errors and p50/p99 latency over time."""
        import datetime as dt

        import matplotlib.pyplot as plt

        times = [dt.datetime.fromtimestamp(s["t"]) for s in self.series]
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 4.5))
        top.plot(times, [s["rps"] for s in self.series], label="requests/s")
        top.plot(times, [s["errors"] / self.step_s for s in self.series], label="errors/s")
        top.set_ylabel("per second")
        top.legend(loc="upper left")
        for q in ("p50_ms", "p99_ms"):
            bottom.plot(times, [s[q] for s in self.series], label=q.split("_")[0])
        bottom.set_ylabel("ms")
        bottom.legend(loc="upper left")
        fig.suptitle(f"{self.name}: the last {_span(self.window_s)}")
        fig.autofmt_xdate()
        return fig


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
