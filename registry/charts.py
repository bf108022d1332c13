"""Charts as SVG markup for the back office's pages: pure functions of labels and integer values, no script
and no library, so a page shows them inline and a test parses them as XML.

Labels come from the database (station names, card numbers masked, product names): every text is escaped
and stripped of the control characters XML forbids. Values are integers in the project's units; `unit` says
how to print them (`value_text`): "money" or "cents" as a decimal amount, "volume" or "cl" as litres, any
other unit after the number, "" a bare number.
"""

from __future__ import annotations

import html
import re

from contracts.errors import ConfigError

__all__ = ["bar_chart", "clean", "line_chart", "nice_ticks", "value_text"]

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "font-family=\"DejaVu Sans, Verdana, sans-serif\" font-size=\"12\""
BAR_COLOUR = "#2f6f9f"
NEGATIVE_COLOUR = "#b5523b"
GRID_COLOUR = "#d9d9d9"
TITLE_HEIGHT = 30
AXIS_HEIGHT = 24
MIN_BAND = 16               # the least height of one bar's band: many bars make the chart taller
MAX_BAND = 40               # the most: a few bars make it shorter
CHAR_WIDTH = 7              # about one character at 12 px, to size the label column
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def clean(text: str) -> str:
    """Text safe inside XML: escaped, quotes too, and without the characters XML 1.0 cannot hold."""
    return html.escape(_FORBIDDEN.sub("", text), quote=True)


def _decimal(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


def value_text(value: int, unit: str) -> str:
    """A value as people read it: 123456 "money" -> "1234.56"; 5025 "volume" -> "50.25 L"."""
    if unit in ("money", "cents"):
        return _decimal(value)
    if unit in ("volume", "cl"):
        return _decimal(value) + " L"
    return f"{value} {unit}" if unit else str(value)


def nice_ticks(low: int, high: int, most: int = 6) -> list[int]:
    """Round integer ticks covering low..high (0 among them when it is in range): steps of 1, 2 or 5 times
    a power of ten, at most about `most` of them."""
    if high < low:
        low, high = high, low
    if high == low:
        high = low + 1
    span, step, scale = high - low, 1, 1
    while True:
        for factor in (1, 2, 5):
            step = factor * scale
            if span <= step * (most - 1):
                first = (low // step) * step
                return list(range(first, high + step, step))
        scale *= 10


def _check(labels: list[str], values: list[int]) -> None:
    if len(labels) != len(values):
        raise ConfigError("a chart needs one label per value", labels=len(labels), values=len(values))


def _f(x: float) -> str:
    return f"{x:.1f}"


def _short(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: max(chars - 1, 1)] + "\u2026"


def _open(title: str, width: int, height: int) -> list[str]:
    text = clean(title)
    svg = (f'<svg xmlns="{SVG_NS}" class="chart" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{text}" {FONT}>')
    heading = (f'<text class="chart-title" x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="14" '
               f'font-weight="bold">{text}</text>')
    return [svg, f"<title>{text}</title>", heading]


def bar_chart(title: str, labels: list[str], values: list[int], unit: str, *, width: int = 640,
              height: int = 320) -> str:
    """Horizontal bars, one per label, from a zero line (negative values to its left), with a value axis
    of round ticks and each bar's value written beside it. Many bars make the chart taller than `height`, a
    few shorter."""
    _check(labels, values)
    low, high = min([0, *values]), max([0, *values])
    ticks = nice_ticks(low, high)
    low, high = ticks[0], ticks[-1]
    label_w = min(max([len(x) for x in labels] + [4]) * CHAR_WIDTH + 12, width * 2 // 5)
    value_w = max([len(value_text(v, unit)) for v in values] + [4]) * CHAR_WIDTH + 10
    left, right = label_w, width - value_w
    height = min(max(height, TITLE_HEIGHT + AXIS_HEIGHT + MIN_BAND * len(values)),
                 TITLE_HEIGHT + AXIS_HEIGHT + MAX_BAND * max(len(values), 1))
    band = (height - TITLE_HEIGHT - AXIS_HEIGHT) / max(len(values), 1)
    bottom = height - AXIS_HEIGHT

    def x(v: int) -> float:
        return left + (right - left) * (v - low) / (high - low)

    out = _open(title, width, height)
    for t in ticks:
        out.append(f'<line class="grid" x1="{_f(x(t))}" y1="{TITLE_HEIGHT}" x2="{_f(x(t))}" y2="{bottom}" '
                   f'stroke="{GRID_COLOUR}"/>')
        out.append(f'<text class="tick" x="{_f(x(t))}" y="{bottom + 16}" text-anchor="middle">'
                   f"{clean(value_text(t, unit))}</text>")
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        top = TITLE_HEIGHT + i * band
        x0, x1 = sorted((x(0), x(v)))
        colour = NEGATIVE_COLOUR if v < 0 else BAR_COLOUR
        shown = clean(value_text(v, unit))
        out.append(f'<g class="bar-row"><title>{clean(label)}: {shown}</title>')
        out.append(f'<text class="label" x="{left - 6}" y="{_f(top + band / 2 + 4)}" text-anchor="end">'
                   f"{clean(_short(label, (label_w - 12) // CHAR_WIDTH))}</text>")
        out.append(f'<rect class="bar" x="{x0:.3f}" y="{_f(top + band * 0.15)}" width="{x1 - x0:.3f}" '
                   f'height="{_f(band * 0.7)}" fill="{colour}" data-value="{v}"/>')
        out.append(f'<text class="value" x="{_f(x1 + 4)}" y="{_f(top + band / 2 + 4)}">{shown}</text></g>')
    out.append(f'<line class="axis" x1="{_f(x(0))}" y1="{TITLE_HEIGHT}" x2="{_f(x(0))}" y2="{bottom}" '
               'stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out)


def line_chart(title: str, labels: list[str], values: list[int], unit: str, *, width: int = 640,
               height: int = 320) -> str:
    """A series over time (per day, per month): points joined by a line, round ticks on the value axis and
    at most ten labels along the bottom, as many as fit."""
    _check(labels, values)
    ticks = nice_ticks(min([0, *values]), max([0, *values]))
    low, high = ticks[0], ticks[-1]
    left = max(len(value_text(t, unit)) for t in ticks) * CHAR_WIDTH + 12
    right, top, bottom = width - 16, TITLE_HEIGHT + 6, height - AXIS_HEIGHT

    def y(v: int) -> float:
        return bottom - (bottom - top) * (v - low) / (high - low)

    def x(i: int) -> float:
        return left + (right - left) * (i + 0.5) / max(len(values), 1)

    out = _open(title, width, height)
    for t in ticks:
        out.append(f'<line class="grid" x1="{left}" y1="{_f(y(t))}" x2="{right}" y2="{_f(y(t))}" '
                   f'stroke="{GRID_COLOUR}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{_f(y(t) + 4)}" text-anchor="end">'
                   f"{clean(value_text(t, unit))}</text>")
    room = max(min(max([len(x) for x in labels] + [1]), 12) * CHAR_WIDTH + 10, 1)
    fits = max(min((right - left) // room, 10), 1)
    every = max(1, -(-len(labels) // fits))
    for i, label in enumerate(labels):
        if i % every == 0:
            out.append(f'<text class="label" x="{_f(x(i))}" y="{bottom + 16}" text-anchor="middle">'
                       f"{clean(_short(label, 12))}</text>")
    if values:
        points = " ".join(f"{_f(x(i))},{y(v):.3f}" for i, v in enumerate(values))
        out.append(f'<polyline class="line" points="{points}" fill="none" stroke="{BAR_COLOUR}" '
                   'stroke-width="2"/>')
        for i, (label, v) in enumerate(zip(labels, values, strict=True)):
            out.append(f'<circle class="point" cx="{_f(x(i))}" cy="{y(v):.3f}" r="3" fill="{BAR_COLOUR}" '
                       f'data-value="{v}"><title>{clean(label)}: {clean(value_text(v, unit))}</title>'
                       "</circle>")
    out.append(f'<line class="axis" x1="{left}" y1="{_f(y(0))}" x2="{right}" y2="{_f(y(0))}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out)
