"""Tables as PDF documents (reports, statements): A4, a Unicode font so Russian and Spanish text prints, the
table's header repeated on every page, page numbers, an optional bar chart drawn with rectangles, and further
tables under their own headings (a statement's subtotals).

The font is DejaVu Sans from fonts-dejavu-core (scripts/setup.sh installs it), embedded as a subset. Cells are
text already formatted by the caller; a column whose cells all read as numbers is aligned right. A table too
wide for a portrait page turns the pages to landscape; wider still, its cells wrap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

from contracts.errors import ConfigError, MissingComponent
from registry.charts import nice_ticks, value_text

__all__ = ["FONT_DIR", "Section", "table_pdf"]

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FAMILY = "DejaVu"
MARGIN = 12                     # mm
BODY_PT, TITLE_PT, SUBTITLE_PT = 8, 14, 9
CELL_PAD = 2.2                  # mm beside a cell's text, both sides together (fpdf2's cell margins)
LINE_MM = 4.2                   # a table's line of text
COLUMN_MAX_MM = 60              # the widest a column's text runs before it wraps
BAR_MM = 5.0                    # one bar's band in a chart
CHART_MAX_BARS = 40             # a chart of more bars shows the first forty (the table lists them all)
_NUMBER = re.compile(r"^[-+]?\d[\d ,.]*( ?(L|%|km))?$")

Chart = tuple[list[str], list[int], str]


class _Document(FPDF):
    """An A4 document whose footer names it and numbers its pages ("page 2 / 5")."""

    def __init__(self, title: str, landscape: bool) -> None:
        super().__init__(orientation="L" if landscape else "P", unit="mm", format="A4")
        self.doc_title = title

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FAMILY, "", 7)
        self.set_text_color(90)
        self.cell(0, 5, self.doc_title, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"{self.page_no()} / {{nb}}", align="R")
        self.set_text_color(0)


def _fonts(pdf: FPDF, font_dir: Path) -> None:
    regular, bold = font_dir / "DejaVuSans.ttf", font_dir / "DejaVuSans-Bold.ttf"
    if not regular.is_file() or not bold.is_file():
        raise MissingComponent("the PDF font DejaVu Sans is missing: install fonts-dejavu-core",
                               font_dir=str(font_dir))
    pdf.add_font(FAMILY, "", str(regular))
    pdf.add_font(FAMILY, "B", str(bold))


def _close(pdf: FPDF) -> None:
    """Close the font files fpdf2 keeps open (fontTools reads them lazily)."""
    for font in pdf.fonts.values():
        ttfont = getattr(font, "ttfont", None)
        if ttfont is not None:
            ttfont.close()


def _numeric(rows: Sequence[Sequence[str]], column: int) -> bool:
    cells = [r[column] for r in rows if r[column]]
    return bool(cells) and all(_NUMBER.match(c) for c in cells)


def _widths(pdf: FPDF, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[float]:
    """Each column as wide as its widest text (the header in bold), in mm, at most COLUMN_MAX_MM: a longer
    text wraps in its column rather than squeezing the others."""
    widths = []
    for i, head in enumerate(header):
        pdf.set_font(FAMILY, "B", BODY_PT)
        wide = pdf.get_string_width(head)
        pdf.set_font(FAMILY, "", BODY_PT)
        longest = {len(r[i]): r[i] for r in rows}
        for text in sorted(longest.items(), reverse=True)[:5]:      # the widest is among the longest
            wide = max(wide, pdf.get_string_width(text[1]))
        widths.append(min(wide, COLUMN_MAX_MM) + CELL_PAD + 0.5)
    return widths


def _chart(pdf: FPDF, chart: Chart) -> None:
    """Horizontal bars from a zero line, labels on the left, each value at its bar's end."""
    labels, values, unit = chart[0][:CHART_MAX_BARS], chart[1][:CHART_MAX_BARS], chart[2]
    if not values:
        return
    pdf.set_font(FAMILY, "", BODY_PT)
    label_w = min(max(pdf.get_string_width(x) for x in labels) + 2, pdf.epw * 0.35)
    value_w = max(pdf.get_string_width(value_text(v, unit)) for v in values) + 3
    ticks = nice_ticks(min([0, *values]), max([0, *values]))
    low, high = ticks[0], ticks[-1]
    left = pdf.l_margin + label_w
    right = pdf.l_margin + pdf.epw - value_w

    def x(v: int) -> float:
        return left + (right - left) * (v - low) / (high - low)

    if pdf.will_page_break(BAR_MM * min(len(values), 8) + 8):
        pdf.add_page()
    top = pdf.get_y()
    pdf.set_draw_color(200)
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        if pdf.will_page_break(BAR_MM + 6):
            pdf.add_page()
            top = pdf.get_y() - i * BAR_MM
        y = top + i * BAR_MM
        x0, x1 = sorted((x(0), x(v)))
        pdf.set_fill_color(*((181, 82, 59) if v < 0 else (47, 111, 159)))
        if x1 > x0:
            pdf.rect(x0, y + 0.8, x1 - x0, BAR_MM - 1.6, style="F")
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(label_w - 1, BAR_MM, _fit(pdf, label, label_w - 1), align="R")
        pdf.set_xy(x1 + 1, y)
        pdf.cell(value_w, BAR_MM, value_text(v, unit))
    bottom = top + len(values) * BAR_MM
    pdf.set_font(FAMILY, "", 6.5)
    for t in ticks:
        pdf.line(x(t), bottom, x(t), bottom + 1.2)
        text = value_text(t, unit)
        pdf.set_xy(x(t) - pdf.get_string_width(text) / 2 - 1, bottom + 1.2)
        pdf.cell(pdf.get_string_width(text) + 2, 3.5, text, align="C")
    pdf.set_draw_color(60)
    pdf.line(x(0), max(top, pdf.t_margin), x(0), bottom)
    pdf.set_draw_color(0)
    pdf.set_fill_color(255)
    pdf.set_y(bottom + 8)


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """The text cut short with an ellipsis to fit `width` mm."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "\u2026") > width:
        text = text[:-1]
    return text + "\u2026"


@dataclass(frozen=True)
class Section:
    """A further table after the first, under its own heading (a statement's subtotals)."""

    heading: str
    header: list[str]
    rows: list[list[str]]


def table_pdf(title: str, subtitle: str, header: list[str], rows: list[list[str]], *,
              chart: Chart | None = None, sections: Sequence[Section] = (),
              font_dir: Path = FONT_DIR) -> bytes:
    """The document: `title` and `subtitle` on the first page, an optional bar chart (labels, integer values,
    their unit as registry.charts.value_text reads it), then the table, its header on every page, then
    each further section's heading and table."""
    tables = [Section("", header, rows), *sections]
    for table in tables:
        if any(len(r) != len(table.header) for r in table.rows):
            raise ConfigError("every row of a PDF table has one cell per column", columns=len(table.header))
    if chart is not None and len(chart[0]) != len(chart[1]):
        raise ConfigError("a chart needs one label per value", labels=len(chart[0]), values=len(chart[1]))
    probe = FPDF(unit="mm", format="A4")
    try:
        _fonts(probe, font_dir)
        natural = [_widths(probe, t.header, t.rows) for t in tables]
    finally:
        _close(probe)
    pdf = _Document(title, landscape=max(sum(w) for w in natural) > 210 - 2 * MARGIN)
    try:
        _fonts(pdf, font_dir)
        pdf.set_margins(MARGIN, MARGIN, MARGIN)
        pdf.set_auto_page_break(True, margin=15)
        pdf.set_title(title)
        pdf.set_creator("forecourt")
        pdf.add_page()
        pdf.set_font(FAMILY, "B", TITLE_PT)
        pdf.multi_cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
        if subtitle:
            pdf.set_font(FAMILY, "", SUBTITLE_PT)
            pdf.multi_cell(0, 5, subtitle, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        if chart is not None:
            _chart(pdf, chart)
        for table, widths in zip(tables, natural, strict=True):
            _table(pdf, table, widths)
        return bytes(pdf.output())
    finally:
        _close(pdf)


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """The text in lines no wider than `width` mm: at spaces, a word longer than a line cut anywhere."""
    if pdf.get_string_width(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if pdf.get_string_width(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while pdf.get_string_width(word) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and pdf.get_string_width(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return [*lines, line] if line else lines or [""]


def _table(pdf: FPDF, section: Section, natural: list[float]) -> None:
    """The rows drawn cell by cell (fpdf2's own table is slow on thousands of rows), the header again at
    the top of every page, every other row shaded, a cell too wide for its column wrapped."""
    if section.heading:
        if pdf.will_page_break(22):
            pdf.add_page()
        pdf.ln(5)
        pdf.set_font(FAMILY, "B", SUBTITLE_PT + 1)
        pdf.multi_cell(0, 6, section.heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
    if not section.header:
        return
    scale = min(1.0, pdf.epw / sum(natural)) if natural else 1.0
    widths = [w * scale for w in natural]
    aligns = ["R" if _numeric(section.rows, i) else "L" for i in range(len(section.header))]
    room = [w - 2 * pdf.c_margin - 0.1 for w in widths]

    def draw(cells: list[str], fill: tuple[int, int, int] | None) -> None:
        lines = [_wrap(pdf, text, r) for text, r in zip(cells, room, strict=True)]
        height = LINE_MM * max(len(x) for x in lines) + 0.8
        if pdf.will_page_break(height):
            pdf.add_page()
            heading()
        x, y = pdf.l_margin, pdf.get_y()
        if fill is not None:
            pdf.set_fill_color(*fill)
            pdf.rect(x, y, sum(widths), height, style="F")
        for width, cell_lines, align in zip(widths, lines, aligns, strict=True):
            for k, line in enumerate(cell_lines):
                pdf.set_xy(x, y + 0.4 + k * LINE_MM)
                pdf.cell(width, LINE_MM, line, align=align)
            x += width
        pdf.line(pdf.l_margin, y + height, pdf.l_margin + sum(widths), y + height)
        pdf.set_xy(pdf.l_margin, y + height)

    def heading() -> None:
        pdf.set_font(FAMILY, "B", BODY_PT)
        draw(section.header, (232, 238, 244))
        pdf.set_font(FAMILY, "", BODY_PT)

    pdf.set_draw_color(170)
    pdf.set_line_width(0.2)
    if pdf.will_page_break(3 * LINE_MM + 3):
        pdf.add_page()
    heading()
    for i, cells in enumerate(section.rows):
        draw(cells, (246, 246, 246) if i % 2 else None)
    pdf.set_fill_color(255)
