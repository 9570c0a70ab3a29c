"""The page a classify() report is shown as (#34): accuracy per class as bars, the confusion
matrix as a plot, the validation items the model gets wrong as thumbnails, size and latency.
One self-contained HTML file (inline SVG and data: images): it opens anywhere, offline."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
.hf-report{font-family:system-ui,sans-serif;color:#222;max-width:960px}
.hf-report h1{font-size:1.4em}.hf-report h2{font-size:1.1em;margin-top:1.4em}
.hf-report .facts{display:flex;gap:2em;flex-wrap:wrap}
.hf-report .fact b{display:block;font-size:1.6em}
.hf-report .bar{background:#e3e8ef;width:240px;height:14px;display:inline-block}
.hf-report .bar span{background:#2f6fde;height:14px;display:block}
.hf-report td,.hf-report th{padding:2px 8px;text-align:left}
.hf-report .wrong{display:flex;flex-wrap:wrap;gap:10px}
.hf-report figure{margin:0;width:120px;font-size:.8em}
.hf-report figure img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;
  border:1px solid #ccc}
"""


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def confusion_svg(classes: list[str], confusion: list[list[int]], cell: int = 44) -> str:
    """Rows: the label; columns: what the model said; darker: a larger share of the row."""
    n = len(classes)
    left, top = 110, 80
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="confusion" '
        f'width="{left + n * cell + 10}" height="{top + n * cell + 30}" '
        f'aria-label="Confusion matrix">',
        f'<text x="{left + n * cell / 2}" y="14" text-anchor="middle" font-size="12">'
        "predicted</text>",
        f'<text x="12" y="{top + n * cell / 2}" font-size="12" '
        f'transform="rotate(-90 12 {top + n * cell / 2})" text-anchor="middle">labeled</text>',
    ]
    for j, name in enumerate(classes):
        x = left + j * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 8}" font-size="11" text-anchor="start" '
            f'transform="rotate(-45 {x} {top - 8})">{escape(name[:14])}</text>'
        )
    for i, row in enumerate(confusion):
        total = sum(row) or 1
        y = top + i * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4}" font-size="11" '
            f'text-anchor="end">{escape(classes[i][:14])}</text>'
        )
        for j, count in enumerate(row):
            share = count / total
            fill = f"rgba(47,111,222,{0.08 + 0.92 * share:.3f})" if count else "#f6f7f9"
            ink = "#fff" if share > 0.55 else "#222"
            parts.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{fill}"><title>{escape(classes[i])} labeled, '
                f"{escape(classes[j])} predicted: {count}</title></rect>"
                f'<text x="{left + j * cell + cell / 2 - 1}" y="{y + cell / 2 + 4}" '
                f'font-size="12" text-anchor="middle" fill="{ink}">{count}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _per_class(report: Any) -> str:
    rows = []
    for i, name in enumerate(report.classes):
        value = report.per_class.get(name)
        count = sum(report.confusion[i]) if i < len(report.confusion) else 0
        width = 0 if value is None else round(240 * value)
        rows.append(
            f"<tr><th>{escape(name)}</th><td>{_percent(value)}</td>"
            f'<td><span class="bar"><span style="width:{width}px"></span></span></td>'
            f"<td>{count} validation items</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def _wrong(report: Any) -> str:
    from .classify import thumbnail

    if not report.wrong:
        return "<p>None: every validation item is classified right.</p>"
    figures = []
    for item in report.wrong:
        said = (
            f"{escape(item['label'])} → <b>{escape(item['predicted'])}</b> "
            f"({100 * item['confidence']:.0f} %)"
        )
        if report.kind == "image":
            src = thumbnail(item["item"])
            shown = f'<img src="{src}" alt="{escape(item["item"])}">' if src else ""
        else:
            shown = f"<q>{escape(str(item['item'])[:140])}</q>"
        figures.append(
            f'<figure title="{escape(str(item["item"]))}">{shown}<figcaption>{said}'
            "</figcaption></figure>"
        )
    more = report.extra.get("wrong_count", len(report.wrong)) - len(report.wrong)
    tail = f"<p>and {more} more.</p>" if more > 0 else ""
    return '<div class="wrong">' + "".join(figures) + "</div>" + tail


def render(report: Any, title: str = "Classifier", embed: bool = False) -> str:
    """The report as HTML: a whole page, or (``embed``) a fragment for a notebook."""
    model = f"a head on the base model {report.base_model}" if report.base_model else "a small "
    if not report.base_model:
        model += "convolutional network" if report.kind == "image" else "text model"
    params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                       for k, v in report.params.items())  # fmt: skip
    validation = report.extra.get("validation_items", sum(map(sum, report.confusion)))
    body = f"""
<div class="hf-report">
<h1>{escape(title)}</h1>
<div class="facts">
 <div class="fact"><b>{_percent(report.accuracy)}</b>accuracy on {validation} validation items</div>
 <div class="fact"><b>{_size(report.size_bytes)}</b>model size</div>
 <div class="fact"><b>{report.latency_ms:.1f} ms</b>one prediction (median)</div>
</div>
<p>The best of the trials: {escape(model)} ({escape(params)}); job {escape(report.job)}.</p>
<h2>Accuracy per class</h2>
{_per_class(report)}
<h2>Confusion matrix</h2>
{confusion_svg(report.classes, report.confusion)}
<h2>What it gets wrong</h2>
{_wrong(report)}
<h2>Next</h2>
<p>Deploy it: <b>Deploy best</b> on this search in the Hubforge panel's Tuning group, or
<code>run.deploy()</code> in a notebook (an endpoint that answers TF Serving's REST calls).
Pre-label the items not labeled yet with it: <code>run.prelabel()</code>, then label the
least sure first (<code>label(project, order="uncertain")</code>).</p>
</div>"""
    if embed:
        return f"<style>{STYLE}</style>{body}"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
