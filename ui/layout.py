"""Where the parts of a screen go, for any display size: pure rectangle arithmetic, no drawing.

Designed at 800x480 (the Raspberry Pi touch display) and scaled by the smaller of the two ratios, so
1024x600 and 1280x800 keep the proportions and the options keep their place beside the function keys.
Options sit in a column at the right edge in every language: the function keys F1..F4 are fixed beside the
screen's right edge, each facing one of the first four options (ISO 9564-1's PIN pad has no such keys; the
column follows the common EFT-POS layout of soft keys next to the display).
"""

from __future__ import annotations

import dataclasses

__all__ = ["BASE", "FKEYS", "Box", "ScreenLayout", "layout"]

BASE = (800, 480)
FKEYS = 4
Box = tuple[int, int, int, int]  # x, y, w, h


@dataclasses.dataclass(frozen=True)
class ScreenLayout:
    scale: float
    header: Box  # tone badge and title
    badge: Box  # the tone's icon and word, at the start of the header
    title: Box
    content: Box  # lines and figures
    options: tuple[Box, ...]  # one box per option, the first FKEYS facing F1..F4
    footer: Box  # the hint: what to do next


def _mirror(box: Box, width: int, rtl: bool) -> Box:
    x, y, w, h = box
    return (width - x - w, y, w, h) if rtl else box


def layout(size: tuple[int, int], options: int, rtl: bool) -> ScreenLayout:
    """Boxes of a screen of size with that many options; right to left mirrors the header (the options stay
    beside the function keys, the content's text aligns right)."""
    width, height = size
    s = min(width / BASE[0], height / BASE[1])
    m = round(14 * s)
    head_h, foot_h = round(78 * s), round(64 * s)
    header = (m, m, width - 2 * m, head_h)
    badge_w = round(132 * s)
    badge = _mirror((m, m, badge_w, head_h), width, rtl)
    title = _mirror((m + badge_w + m, m, width - 3 * m - badge_w, head_h), width, rtl)
    footer = (m, height - m - foot_h, width - 2 * m, foot_h)
    top, bottom = m + head_h + m, height - 2 * m - foot_h
    body_h = bottom - top
    boxes: list[Box] = []
    content_w = width - 2 * m
    if options:
        columns = 1 if options <= FKEYS else 2
        rows = FKEYS if options <= FKEYS else max(FKEYS, -(-options // 2))
        col_w = round((300 if columns == 1 else 250) * s)
        gap = round(10 * s)
        row_h = (body_h - (rows - 1) * gap) // rows
        for i in range(options):
            col, row = (0, i) if i < rows else (1, i - rows)
            x = width - m - col_w - col * (col_w + gap)
            boxes.append((x, top + row * (row_h + gap), col_w, row_h))
        content_w = width - 2 * m - columns * (col_w + gap) - gap
    content = (m, top, content_w, body_h)  # left of the options; text inside aligns to the start side
    return ScreenLayout(
        scale=s, header=header, badge=badge, title=title, content=content, options=tuple(boxes), footer=footer
    )
