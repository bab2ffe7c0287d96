"""Server-rendered inline SVG bar charts for the seed's figures.

Why not a charting library: a JS library (ECharts, Chart.js) would have to be vendored into the wheel and kept up
to date for an offline police network, and would make every chart depend on JavaScript. A horizontal bar chart with a
target line is ~40 lines of Python, renders without JS, prints well, and is testable as text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str
    rate: float | None  # 0..1, None when there is nothing to measure
    href: str | None = None  # where a click on a below-target bar leads
    tip: str = ""  # extra hover text (counts)


def pct(rate: float | None) -> str:
    """Rounded *down* to 0.1%: 99.96% must not read as 100.0% against a 100% target."""
    if rate is None:
        return "—"
    return f"{math.floor(rate * 1000 + 1e-9) / 10:.1f}%"


def bar_chart(bars: list[Bar], target: float, *, title: str, target_label: str, no_data: str,
              width: int = 560, label_width: int = 150, row: int = 22) -> Markup:
    """Horizontal bars (0-100%), a dashed target line; bars below target are red and link to their records."""
    value_width = 56
    plot = width - label_width - value_width
    top, bottom = 22, 8
    height = top + bottom + row * max(len(bars), 1)
    tx = label_width + plot * target
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<rect x="{label_width}" y="{top}" width="{plot}" height="{row * max(len(bars), 1)}" class="plot"/>']
    for i, b in enumerate(bars):
        y = top + i * row
        name = b.label if len(b.label) <= 10 else b.label[:9] + "…"
        out.append(f'<text x="{label_width - 6}" y="{y + row / 2 + 4}" text-anchor="end" class="lbl">'
                   f'<title>{escape(b.label)}</title>{escape(name)}</text>')
        if b.rate is None:
            out.append(f'<text x="{label_width + 4}" y="{y + row / 2 + 4}" class="nodata">{escape(no_data)}</text>')
            continue
        below = b.rate < target
        bar = (f'<rect x="{label_width}" y="{y + 4}" width="{max(plot * b.rate, 1):.1f}" height="{row - 8}" '
               f'class="{"bar below" if below else "bar ok"}"><title>{escape(b.label)} {pct(b.rate)} '
               f'{escape(b.tip)}</title></rect>')
        if below and b.href:
            bar = f'<a href="{escape(b.href)}">{bar}</a>'
        out.append(bar)
        out.append(f'<text x="{width - 4}" y="{y + row / 2 + 4}" text-anchor="end" '
                   f'class="{"val below" if below else "val"}">{pct(b.rate)}</text>')
    out.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{height - bottom + 2}" class="target"/>')
    out.append(f'<text x="{min(tx, width - value_width):.1f}" y="{top - 8}" text-anchor="middle" class="tlbl">'
               f'{escape(target_label)} {pct(target)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
