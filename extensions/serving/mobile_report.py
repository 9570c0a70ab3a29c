"""What ``serving.optimize`` found, as a person reads it: a table of variants, a plot of
accuracy against size, and runnable snippets for the chosen file (Python, Android, iOS)."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Variant:
    """One ``.tflite`` file: sizes in bytes, accuracy in points (0-100) on the held-out
    data, LiteRT latency p50 (ms, one sample) on 1 thread and on all, peak memory, the share
    of held-out samples it answers as the SavedModel does, and whether it passed parity
    (same signature, agreement at least the minimum) and the accuracy budget."""

    name: str
    path: str
    size_bytes: int
    size_gzip_bytes: int
    accuracy: float | None
    latency_ms: float
    latency_ms_all_threads: float
    peak_memory_bytes: int
    agreement: float
    parity: bool
    within_budget: bool
    note: str = ""

    @property
    def eligible(self) -> bool:
        return self.parity and self.within_budget


@dataclass
class OptimizationReport:
    variants: list[Variant]
    baseline_accuracy: float
    settings: dict[str, Any]
    folder: str
    signature: dict[str, Any]
    samples: int
    class_names: list[str] | None = None
    normalization: dict[str, Any] | None = None
    job: str | None = None  # the job that built them (run="job")
    chosen: Variant | None = field(default=None, init=False)
    metadata: dict[str, Any] = field(default_factory=dict)  # written into the files (labels...)

    def __post_init__(self) -> None:
        eligible = [v for v in self.variants if v.eligible]
        self.chosen = min(eligible, key=lambda v: v.size_gzip_bytes) if eligible else None

    @classmethod
    def load(cls, path: str | Path) -> OptimizationReport:
        """A report saved by optimize (``<folder>/report.json``)."""
        data = json.loads(Path(path).read_text())
        data.pop("chosen", None)
        data["variants"] = [Variant(**v) for v in data["variants"]]
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        found = {k: v for k, v in asdict(self).items() if k != "chosen"}
        return found | {"chosen": self.chosen.name if self.chosen else None}

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; built: {[v.name for v in self.variants]}")

    # -- reading it ----------------------------------------------------------------------
    def rows(self) -> list[dict[str, str]]:
        float_size = next((v.size_gzip_bytes for v in self.variants if v.name == "float"), None)
        rows = []
        for v in self.variants:
            smaller = f"{float_size / v.size_gzip_bytes:.1f}x" if float_size else "-"
            verdict = (
                "chosen"
                if v is self.chosen
                else "ok"
                if v.eligible
                else ("over the accuracy budget" if v.parity else "refused: changes the model")
            )
            rows.append(
                {
                    "variant": v.name,
                    "size": _kib(v.size_bytes),
                    "gzipped": _kib(v.size_gzip_bytes),
                    "vs float (gz)": smaller,
                    "accuracy": "-" if v.accuracy is None else f"{v.accuracy:.1f}",
                    "agreement": f"{v.agreement:.0%}",
                    "latency 1 thread": f"{v.latency_ms:.3f} ms",
                    "all threads": f"{v.latency_ms_all_threads:.3f} ms",
                    "peak memory": _kib(v.peak_memory_bytes),
                    "": verdict,
                }
            )
        return rows

    def table(self) -> str:
        rows = self.rows()
        keys = list(rows[0]) if rows else []
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
        lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
        lines += ["  ".join(r[k].ljust(widths[k]) for k in keys) for r in rows]
        return "\n".join([*lines, self._summary()])

    def _summary(self) -> str:
        s = self.settings
        chosen = (
            f"chosen: {self.chosen.name} ({self.chosen.path})"
            if self.chosen
            else "none chosen: no variant passed parity within the accuracy budget"
        )
        return (
            f"SavedModel accuracy {self.baseline_accuracy:.1f} on {self.samples} held-out "
            f"samples; budget {s['max_accuracy_loss']:g} point(s); parity: the SavedModel's "
            f"signature and the same answer on at least {s['min_agreement']:.0%} of the "
            f"samples. {chosen}{self._metadata_note()}"
        )

    def _metadata_note(self) -> str:
        """Whether the files carry TFLite metadata (labels, normalisation), and why not."""
        files = (self.metadata or {}).get("files") or {}
        if self.metadata.get("reason"):
            return f". No TFLite metadata in the files: {self.metadata['reason']}"
        missing = [Path(p).name for p, ok in files.items() if ok is not True]
        if missing:
            return f". No TFLite metadata in {', '.join(missing)} (see report.metadata)"
        return ". TFLite metadata (labels, normalisation) in every file" if files else ""

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        rows = self.rows()
        head = "".join(f"<th>{html.escape(k)}</th>" for k in (rows[0] if rows else {}))
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r.values()) + "</tr>"
            for r in rows
        )
        summary = html.escape(self._summary())
        return f"<div><table><tr>{head}</tr>{body}</table><p>{summary}</p></div>"

    def plot(self, path: str | Path | None = None) -> Any:
        """Accuracy against gzipped size, one point per variant, the chosen one ringed; saved
        to ``path`` (PNG) when given."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for v in self.variants:
            marker = "o" if v.eligible else "x"
            ax.scatter(v.size_gzip_bytes / 1024, v.accuracy, marker=marker, s=40)
            ax.annotate(
                v.name,
                (v.size_gzip_bytes / 1024, v.accuracy),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        if self.chosen:
            ax.scatter(
                self.chosen.size_gzip_bytes / 1024,
                self.chosen.accuracy,
                s=200,
                facecolors="none",
                edgecolors="green",
                label="chosen",
            )
        floor = self.baseline_accuracy - self.settings["max_accuracy_loss"]
        ax.axhline(floor, linestyle="--", color="grey", label="accuracy budget")
        ax.set_xlabel("gzipped size (KiB)")
        ax.set_ylabel("accuracy on held-out data (%)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig

    def snippets(self, variant: str | None = None) -> dict[str, str]:
        """Code that runs the chosen (or the named) file: ``python`` (runs as is:
        ``python predict.py data.npz`` prints the accuracy), ``kotlin`` and ``swift``."""
        from .mobile_snippets import snippets

        target = self.variant(variant) if variant else self.chosen
        if target is None:
            raise KeyError("no variant was chosen: name one, e.g. snippets('float')")
        return snippets(target, self.signature, self.class_names, self.normalization)


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"
