"""Small dependency-free SVG line charts for widgets (metrics per epoch)."""

from __future__ import annotations

import html

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


def line_chart(history: list[dict], width: int = 420, height: int = 160) -> str:
    """Each numeric metric of ``history`` (one dict per epoch) as a line, scaled per metric."""
    if not history:
        return '<div class="hubforge-chart-empty">No epoch finished yet.</div>'
    names = sorted({k for h in history for k in h if k != "epoch"})
    pad, n = 24, len(history)
    parts = [
        f'<svg class="hubforge-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="metrics per epoch">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white" stroke="#ccc"/>',
    ]
    for i, name in enumerate(names):
        values = [h.get(name) for h in history]
        nums = [v for v in values if isinstance(v, int | float)]
        if not nums:
            continue
        lo, hi = min(nums), max(nums)
        span = (hi - lo) or 1.0
        points = []
        for j, v in enumerate(values):
            if isinstance(v, int | float):
                x = pad + (width - 2 * pad) * (j / max(1, n - 1))
                y = height - pad - (height - 2 * pad) * ((v - lo) / span)
                points.append(f"{x:.1f},{y:.1f}")
        color = COLORS[i % len(COLORS)]
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" '
            f'points="{" ".join(points)}"><title>{html.escape(name)}</title></polyline>'
        )
        parts.append(
            f'<text x="{pad + 110 * i}" y="14" font-size="11" fill="{color}">'
            f"{html.escape(name)} {nums[-1]:.4g}</text>"
        )
    parts.append(
        f'<text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">'
        f"epoch {history[-1]['epoch'] + 1}</text></svg>"
    )
    return "".join(parts)
