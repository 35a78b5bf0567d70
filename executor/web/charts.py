"""Charts as inline SVG, drawn here: no script, nothing fetched, the page's CSP unchanged.

Every text a chart shows (a metric's name, a run id, a param's value) comes from a
record and is escaped; numbers are formatted here. A series of any length is drawn
with at most :data:`BUCKETS` x 2 points: the least and the greatest value of each
horizontal slice, so a spike survives where a plain subsample would drop it. Hover
text is SVG's own ``<title>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from executor.htmlpage import drawn

__all__ = ["Line", "Point", "curves", "parallel", "scatter"]

WIDTH, HEIGHT = 640, 290
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 62, 40
BUCKETS = 600
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
MAX_LINES = len(PALETTE) * 2  # lines in one chart; more are left out (and said so)


@dataclass(frozen=True)
class Line:
    """One curve: its label (a run id, "this run"), its steps and values."""

    label: str
    steps: Sequence[float]
    values: Sequence[float]


@dataclass(frozen=True)
class Point:
    """One run in a scatter: x (a param), y (a metric), where its page is."""

    label: str
    x: float
    y: float
    href: str | None = None


def curves(
    title: str,
    lines: Sequence[Line],
    *,
    band: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
    band_label: str = "",
) -> str:
    """Lines over steps; ``band`` (steps, lows, highs) shaded behind them (a seed spread)."""
    shown = [line for line in lines if line.steps][:MAX_LINES]
    xs = [x for line in shown for x in (line.steps[0], line.steps[-1])]
    ys = [y for line in shown for y in (min(line.values), max(line.values))]
    if band is not None and band[0]:
        xs += [band[0][0], band[0][-1]]
        ys += [min(band[1]), max(band[2])]
    if not xs:
        return drawn("")
    frame = _Frame(min(xs), max(xs), min(ys), max(ys))
    parts = [_open(title), *frame.axes(x_label="step")]
    if band is not None and band[0]:
        steps, lows, highs = band
        upper = [f"{frame.x(s):.1f},{frame.y(v):.1f}" for s, v in zip(steps, highs, strict=True)]
        lower = [f"{frame.x(s):.1f},{frame.y(v):.1f}" for s, v in zip(steps, lows, strict=True)]
        parts.append(
            f'<polygon class="band" points="{" ".join(upper + lower[::-1])}" fill="#999" '
            f'fill-opacity="0.25" stroke="none"><title>{escape(band_label)}</title></polygon>'
        )
    for index, line in enumerate(shown):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(
            f"{frame.x(s):.1f},{frame.y(v):.1f}" for s, v in _thin(line.steps, line.values)
        )
        hover = f"{line.label}: last {_fmt(line.values[-1])} at step {_fmt(line.steps[-1])}"
        parts.append(
            f'<polyline class="curve" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5"><title>{escape(hover)}</title></polyline>'
        )
    parts += _legend([line.label for line in shown], band_label if band else "")
    if len(lines) > len(shown):
        parts.append(_note(f"{len(lines) - len(shown)} more not drawn"))
    return _close(parts)


def scatter(title: str, x_label: str, y_label: str, points: Sequence[Point]) -> str:
    """One dot per run: a param against a metric; each dot opens its run."""
    if not points:
        return drawn("")
    frame = _Frame(
        min(p.x for p in points),
        max(p.x for p in points),
        min(p.y for p in points),
        max(p.y for p in points),
        dots=True,
    )
    parts = [_open(title), *frame.axes(x_label=x_label, y_label=y_label)]
    for p in points:
        dot = (
            f'<circle class="dot" cx="{frame.x(p.x):.1f}" cy="{frame.y(p.y):.1f}" r="4" '
            f'fill="{PALETTE[0]}" fill-opacity="0.7"><title>{escape(p.label)}: '
            f"{escape(x_label)} {_fmt(p.x)}, {escape(y_label)} {_fmt(p.y)}</title></circle>"
        )
        parts.append(f'<a href="{escape(p.href)}">{dot}</a>' if p.href else dot)
    return _close(parts)


def parallel(
    title: str,
    axes: Sequence[str],
    rows: Sequence[tuple[str, Sequence[float | None], str | None]],
    *,
    colour_by: Callable[[Sequence[float | None]], float] | None = None,
) -> str:
    """Parallel coordinates: one vertical axis per param or metric, one line per run
    (label, its value on each axis, its page), coloured by the last axis."""
    usable = [r for r in rows if all(v is not None for v in r[1])]
    if len(axes) < 2 or not usable:
        return drawn("")
    spans = []
    for i in range(len(axes)):
        column = [float(r[1][i]) for r in usable]  # type: ignore[arg-type]
        spans.append((min(column), max(column)))
    width = WIDTH - LEFT - RIGHT - 40  # room for the last axis's name
    step = width / (len(axes) - 1)
    parts = [_open(title)]
    for i, name in enumerate(axes):
        x = LEFT + i * step
        low, high = spans[i]
        parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#555"/>'
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
            f'font-size="11">{escape(_clip(name))}</text>'
            f'<text x="{x:.1f}" y="{TOP - 6}" text-anchor="middle" font-size="10">'
            f"{_fmt(high)}</text>"
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 30}" text-anchor="middle" '
            f'font-size="10">{_fmt(low)}</text>'
        )
    last_low, last_high = spans[-1]
    for label, values, href in usable:
        ys = []
        for i, value in enumerate(values):
            low, high = spans[i]
            share = 0.5 if high == low else (float(value) - low) / (high - low)  # type: ignore[arg-type]
            ys.append(HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM))
        points = " ".join(f"{LEFT + i * step:.1f},{y:.1f}" for i, y in enumerate(ys))
        last = float(values[-1])  # type: ignore[arg-type]
        share = 0.5 if last_high == last_low else (last - last_low) / (last_high - last_low)
        colour = _ramp(share)
        line = (
            f'<polyline class="run" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="1.5" stroke-opacity="0.8"><title>{escape(label)}</title></polyline>'
        )
        parts.append(f'<a href="{escape(href)}">{line}</a>' if href else line)
    return _close(parts)


class _Frame:
    """Data coordinates to the picture's, with round ticks on both axes."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, *, dots: bool = False) -> None:
        pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
        if dots:  # a dot at the very edge is half hidden: room on both sides
            x_pad = (x1 - x0) * 0.05 or abs(x0) * 0.05 or 1.0
            x0, x1 = x0 - x_pad, x1 + x_pad
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.y0, self.y1 = y0 - pad, y1 + pad

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)

    def axes(self, *, x_label: str, y_label: str = "") -> list[str]:
        bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
        parts = [
            f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#555"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#555"/>',
        ]
        for tick in _ticks(self.x0, self.x1):
            x = self.x(tick)
            parts.append(
                f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#555"/>'
                f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="10">'
                f"{_fmt(tick)}</text>"
            )
        for tick in _ticks(self.y0, self.y1):
            y = self.y(tick)
            parts.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>'
                f'<text x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">'
                f"{_fmt(tick)}</text>"
            )
        parts.append(
            f'<text x="{(LEFT + right) / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
            f'font-size="11">{escape(_clip(x_label))}</text>'
        )
        if y_label:
            middle = (TOP + bottom) / 2
            parts.append(
                f'<text x="12" y="{middle:.1f}" font-size="11" text-anchor="middle" '
                f'transform="rotate(-90 12 {middle:.1f})">{escape(_clip(y_label))}</text>'
            )
        return parts


def _thin(steps: Sequence[float], values: Sequence[float]) -> list[tuple[float, float]]:
    """At most 2 x :data:`BUCKETS` points: each slice of steps keeps its least and greatest
    value, in step order, so the drawn line has every peak the data has."""
    pairs = list(zip(steps, values, strict=True))
    if len(pairs) <= 2 * BUCKETS:
        return pairs
    size = len(pairs) / BUCKETS
    kept: list[tuple[float, float]] = []
    for b in range(BUCKETS):
        chunk = pairs[int(b * size) : int((b + 1) * size)]
        if chunk:
            low = min(chunk, key=lambda p: p[1])
            high = max(chunk, key=lambda p: p[1])
            kept += sorted({low, high})
    return kept


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _clip(text: str, most: int = 48) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _ramp(share: float) -> str:
    """Blue (low) to red (high), for the last axis of parallel coordinates."""
    share = min(max(share, 0.0), 1.0)
    return f"rgb({int(40 + 200 * share)},{int(90 + 20 * (1 - share))},{int(220 - 180 * share)})"


def _legend(labels: Sequence[str], band_label: str) -> list[str]:
    """Two rows under the title at most; a label keeps its end (a run id's distinct part)."""
    parts, x, row = [], float(LEFT), 0
    entries = [(PALETTE[i % len(PALETTE)], label) for i, label in enumerate(labels)]
    if band_label:
        entries.append(("#bbb", band_label))
    for index, (colour, label) in enumerate(entries):
        text = label if len(label) <= 30 else "…" + label[-29:]
        width = 26 + 6.9 * len(text)
        if x + width > WIDTH - RIGHT and x > LEFT:
            row, x = row + 1, float(LEFT)
        if row == 2:
            parts.append(_note(f"+{len(entries) - index} more"))
            break
        y = 28 + 14 * row
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.1f}" y="{y + 9}" font-size="11">{escape(text)}</text>'
        )
        x += width
    return parts


def _note(text: str) -> str:
    return (
        f'<text x="{WIDTH - RIGHT}" y="16" text-anchor="end" font-size="10">{escape(text)}</text>'
    )


def _open(title: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<text class="chart-title" x="{LEFT}" y="16" font-size="13" font-weight="bold">'
        f"{escape(_clip(title, 80))}</text>"
    )


def _close(parts: list[str]) -> str:
    return drawn("".join(parts) + "</svg>")  # every text in parts was escaped above
