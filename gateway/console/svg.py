"""Plots drawn on the server as SVG: readable without JavaScript, printable, and styled
with presentation attributes only (the console's CSP allows no inline style).

Pure functions: data in, markup out. Every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

INK, MUTED, ACCENT, TARGET, GRID = "#1b1f24", "#4a5360", "#0b57d0", "#a4000f", "#d5dbe2"


def _text(x: float, y: float, text: object, *, anchor: str = "start", size: int = 12,
          fill: str = INK, weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}" font-weight="{weight}" font-family="sans-serif">{escape(str(text))}</text>')


def _frame(width: int, height: int, title: str, body: list[str]) -> Markup:
    label = escape(title)
    # Every label went through escape(); the rest are numbers and constants.
    markup = (f'<svg class="plot" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
              f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
              f"<title>{label}</title>" + "".join(body) + "</svg>")
    return Markup(markup)  # noqa: S704


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    return float(((int(value) // step) + 1) * step)


def cumulative_chart(labels: Sequence[str], values: Sequence[int], *, target: int | None,
                     title: str, width: int = 720, height: int = 300) -> Markup:
    """A cumulative count per period against a horizontal target line."""
    left, right, top, bottom = 56, 16, 24, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max([*values, target or 0, 1]))
    body: list[str] = [_text(left, 16, title, weight="bold")]

    def y_of(v: float) -> float:
        return top + plot_h - (v / top_value) * plot_h

    for i in range(5):
        v = top_value * i / 4
        y = y_of(v)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                    f'stroke="{GRID}"/>')
        body.append(_text(left - 6, y + 4, f"{v:g}", anchor="end", fill=MUTED))
    n = max(len(values), 1)
    xs = [left + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2) for i in range(len(values))]
    if values:
        points = " ".join(f"{x:.1f},{y_of(v):.1f}" for x, v in zip(xs, values, strict=True))
        body.append(f'<polyline points="{points}" fill="none" stroke="{ACCENT}" stroke-width="2.5"/>')
        for x, v, label in zip(xs, values, labels, strict=True):
            body.append(f'<circle cx="{x:.1f}" cy="{y_of(v):.1f}" r="3" fill="{ACCENT}">'
                        f"<title>{escape(label)}: {v}</title></circle>")
        every = max(1, len(labels) // 8)
        for i, (x, label) in enumerate(zip(xs, labels, strict=True)):
            if i % every == 0 or i == len(labels) - 1:
                body.append(_text(x, height - bottom + 18, label, anchor="middle", size=11, fill=MUTED))
    else:
        body.append(_text(left + plot_w / 2, top + plot_h / 2, "nothing yet", anchor="middle", fill=MUTED))
    if target:
        y = y_of(target)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{TARGET}" '
                    f'stroke-width="2" stroke-dasharray="6 4"/>')
        body.append(_text(width - right, y - 6, f"target {target}", anchor="end", fill=TARGET))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
                f'stroke="{INK}"/>')
    return _frame(width, height, title, body)


def interval_chart(rows: Sequence[tuple[str, float | None, float | None, float | None]], *,
                   title: str, threshold: float | None = None, width: int = 720) -> Markup:
    """Proportions (0–1) with their confidence intervals, one row each."""
    left, right, row_h, top = 200, 24, 30, 40
    height = top + row_h * max(len(rows), 1) + 32
    plot_w = width - left - right
    body = [_text(8, 16, title, weight="bold")]

    def x_of(v: float) -> float:
        return left + max(0.0, min(1.0, v)) * plot_w

    for i in range(6):
        x = x_of(i / 5)
        body.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{height - 28}" stroke="{GRID}"/>')
        body.append(_text(x, height - 12, f"{i * 20}%", anchor="middle", fill=MUTED, size=11))
    if threshold is not None:
        x = x_of(threshold)
        body.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{height - 28}" stroke="{TARGET}" '
                    f'stroke-dasharray="4 3"/>')
    for i, (label, value, low, high) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        body.append(_text(left - 8, y + 4, label, anchor="end"))
        if low is not None and high is not None:
            body.append(f'<line x1="{x_of(low):.1f}" y1="{y:.1f}" x2="{x_of(high):.1f}" y2="{y:.1f}" '
                        f'stroke="{INK}" stroke-width="2"/>')
        if value is not None:
            body.append(f'<circle cx="{x_of(value):.1f}" cy="{y:.1f}" r="5" fill="{ACCENT}">'
                        f"<title>{escape(label)}: {value:.0%}</title></circle>")
        else:
            body.append(_text(left + 4, y + 4, "no data yet", fill=MUTED, size=11))
    return _frame(width, height, title, body)


def flow_diagram(stages: Sequence[tuple[str, int | None]], side: Sequence[tuple[int, str, int | None]],
                 *, title: str, width: int = 720) -> Markup:
    """A CONSORT-style column of boxes; `side` boxes (index of the stage they leave from,
    label, count) sit to the right with an arrow out of the main column."""
    box_w, box_h, gap, top = 300, 46, 30, 30
    x = 40
    height = top + len(stages) * (box_h + gap)
    body = [_text(8, 16, title, weight="bold"),
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker></defs>']
    for i, (label, count) in enumerate(stages):
        y: float = top + i * (box_h + gap)
        body.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" '
                    f'fill="#f3f5f8" stroke="{INK}"/>')
        body.append(_text(x + box_w / 2, y + 19, label, anchor="middle"))
        body.append(_text(x + box_w / 2, y + 37, "—" if count is None else f"n = {count}",
                          anchor="middle", weight="bold"))
        if i + 1 < len(stages):
            body.append(f'<line x1="{x + box_w / 2}" y1="{y + box_h}" x2="{x + box_w / 2}" '
                        f'y2="{y + box_h + gap - 2}" stroke="{INK}" marker-end="url(#arrow)"/>')
    for index, label, count in side:
        y = top + index * (box_h + gap) + box_h + gap / 2 - box_h / 2
        sx = x + box_w + 60
        body.append(f'<line x1="{x + box_w / 2}" y1="{y + box_h / 2}" x2="{sx - 2}" y2="{y + box_h / 2}" '
                    f'stroke="{INK}" marker-end="url(#arrow)"/>')
        body.append(f'<rect x="{sx}" y="{y}" width="{width - sx - 8}" height="{box_h}" rx="4" '
                    f'fill="#fff" stroke="{INK}"/>')
        body.append(_text(sx + 10, y + 19, label))
        body.append(_text(sx + 10, y + 37, "—" if count is None else f"n = {count}", weight="bold"))
    return _frame(width, height, title, body)
