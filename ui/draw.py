"""Drawing a View with pygame at any display size, in a normal or a high-contrast theme.

draw_view() returns a Drawing: where every option is (a touch maps to its key) and every text it placed,
with the box it had to fit (the screenshot tests check that none is clipped). Texts shrink to fit their box
down to a floor; a text that still does not fit is drawn clipped and reported so.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from ui.fonts import font_path, shape
from ui.layout import FKEYS, Box, layout
from ui.render import SCREEN_BG
from ui.view import Tone, View

__all__ = ["HIGH_CONTRAST", "NORMAL", "THEMES", "Drawing", "Placed", "Theme", "draw_view"]

Color = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Theme:
    name: str
    background: Color
    text: Color
    muted: Color
    band: Color  # header and footer background
    option: Color
    option_text: Color
    border: Color
    border_width: int  # at 800x480
    tones: dict[Tone, Color]


# the dark LCD green the terminal has always shown (ui.render.SCREEN_BG), light text on it
NORMAL = Theme(
    "normal",
    background=SCREEN_BG,
    text=(240, 250, 245),
    muted=(165, 205, 185),
    band=(24, 52, 44),
    option=(44, 92, 160),
    option_text=(255, 255, 255),
    border=(96, 140, 204),
    border_width=2,
    tones={
        Tone.INFO: (90, 160, 240),
        Tone.OK: (60, 190, 110),
        Tone.WARNING: (240, 180, 40),
        Tone.ERROR: (235, 80, 70),
    },
)
# black and white with yellow edges: contrast 21:1 for text, beyond WCAG 2.1 1.4.6 (7:1)
HIGH_CONTRAST = Theme(
    "high_contrast",
    background=(0, 0, 0),
    text=(255, 255, 255),
    muted=(255, 255, 255),
    band=(0, 0, 0),
    option=(0, 0, 0),
    option_text=(255, 255, 0),
    border=(255, 255, 0),
    border_width=4,
    tones={t: (255, 255, 0) for t in Tone},
)
THEMES = {t.name: t for t in (NORMAL, HIGH_CONTRAST)}


@dataclasses.dataclass(frozen=True)
class Placed:
    """One text drawn: as given, as drawn (shaped), the box it had, the area it took, its size, the font file
    and the side it is aligned to (left, right, center)."""

    text: str
    drawn: str
    box: pygame.Rect
    area: pygame.Rect
    size: int
    font: str
    side: str

    @property
    def fits(self) -> bool:
        return self.box.contains(self.area)


@dataclasses.dataclass
class Drawing:
    size: tuple[int, int]
    rtl: bool
    options: list[tuple[str, pygame.Rect]] = dataclasses.field(default_factory=list)
    texts: list[Placed] = dataclasses.field(default_factory=list)

    def key_at(self, pos: tuple[int, int]) -> str | None:
        """The panel key of the option touched at pos, if any."""
        return next((key for key, rect in self.options if rect.collidepoint(pos)), None)

    def clipped(self) -> list[Placed]:
        return [p for p in self.texts if not p.fits]


def _font(weight: str, size: int) -> pygame.font.Font:
    if not pygame.font.get_init():
        pygame.font.init()
    font = _load(weight, size)
    try:
        font.get_height()
    except pygame.error:  # loaded before the font module was quit and started again: dead
        _load.cache_clear()
        font = _load(weight, size)
    return font


@functools.lru_cache(maxsize=256)
def _load(weight: str, size: int) -> pygame.font.Font:
    return pygame.font.Font(font_path(weight), size)


class _Painter:
    def __init__(self, surface: pygame.Surface, view: View, theme: Theme, origin: tuple[int, int]) -> None:
        self.surface, self.view, self.theme = surface, view, theme
        self.ox, self.oy = origin
        self.drawing = Drawing(size=surface.get_size(), rtl=view.rtl)

    def rect(self, box: Box) -> pygame.Rect:
        x, y, w, h = box
        return pygame.Rect(x, y, w, h)

    def text(
        self,
        text: str,
        box: pygame.Rect,
        *,
        size: int,
        floor: int,
        color: Color,
        weight: str = "regular",
        align: str = "start",
    ) -> Placed:
        """Text in box at the largest size <= size that fits, aligned to the start side (or centre, end)."""
        drawn = shape(text, self.view.rtl)
        font = _font(weight, size)
        # the rendered height, not the font's line height: some scripts' glyphs reach a pixel beyond it
        while size > floor and (font.size(drawn)[0] > box.w or font.size(drawn)[1] > box.h):
            size = max(floor, min(size - 1, int(size * box.w / max(1, font.size(drawn)[0]))))
            font = _font(weight, size)
        img = font.render(drawn, True, color)
        side = align if align == "center" else ("right" if (align == "start") == self.view.rtl else "left")
        area = img.get_rect(centery=box.centery)
        if side == "center":
            area.centerx = box.centerx
        elif side == "right":
            area.right = box.right
        else:
            area.left = box.left
        self.surface.blit(img, area, area=None)
        placed = Placed(text, drawn, box.move(self.ox, self.oy), area.move(self.ox, self.oy), size,
                        font_path(weight), side)
        self.drawing.texts.append(placed)
        return placed


def draw_view(
    surface: pygame.Surface, view: View, theme: Theme = NORMAL, origin: tuple[int, int] = (0, 0)
) -> Drawing:
    """Draw view over the whole of surface; origin: where surface sits on the display (touch positions)."""
    p = _Painter(surface, view, theme, origin)
    t = theme
    lay = layout(surface.get_size(), len(view.options), view.rtl)
    s = lay.scale
    surface.fill(t.background)
    header, footer = p.rect(lay.header), p.rect(lay.footer)
    pygame.draw.rect(surface, t.band, header, border_radius=round(8 * s))
    pygame.draw.rect(surface, t.band, footer, border_radius=round(8 * s))
    tone = t.tones[view.tone]
    pygame.draw.rect(
        surface, tone, header, width=max(1, round(t.border_width * s)), border_radius=round(8 * s)
    )
    _badge(p, p.rect(lay.badge), tone, s)
    p.text(
        view.title,
        p.rect(lay.title).inflate(-round(12 * s), -round(8 * s)),
        size=round(44 * s),
        floor=round(20 * s),
        color=t.text,
        weight="bold",
    )
    _content(p, p.rect(lay.content), s)
    for i, (option, box) in enumerate(zip(view.options, lay.options, strict=True)):
        _option(p, option.key, option.label, p.rect(box), i + 1 if i < FKEYS else None, s)
    if view.hint:
        p.text(
            view.hint,
            footer.inflate(-round(24 * s), -round(10 * s)),
            size=round(30 * s),
            floor=round(16 * s),
            color=t.text,
            align="center",
        )
    return p.drawing


def _badge(p: _Painter, box: pygame.Rect, color: Color, s: float) -> None:
    """The tone as a shape (circle i, circle tick, triangle !, octagon x) and a word: never colour alone."""
    r = round(20 * s)
    icon = pygame.Rect(0, 0, 2 * r, 2 * r)
    icon.center = (box.centerx, box.y + round(8 * s) + r)
    _icon(p.surface, p.view.tone, icon, color, p.theme.background, s)
    word = pygame.Rect(box.x, icon.bottom + round(2 * s), box.w, box.bottom - icon.bottom - round(4 * s))
    p.text(
        p.view.tone_word, word, size=round(20 * s), floor=round(12 * s), color=p.theme.text, align="center"
    )


def _icon(surface: pygame.Surface, tone: Tone, rect: pygame.Rect, color: Color, ink: Color, s: float) -> None:
    cx, cy, r = rect.centerx, rect.centery, rect.w // 2
    w = max(2, round(4 * s))
    if tone is Tone.WARNING:
        pygame.draw.polygon(
            surface, color, [(cx, rect.top), (rect.right, rect.bottom), (rect.left, rect.bottom)]
        )
        pygame.draw.line(surface, ink, (cx, cy - r // 3), (cx, cy + r // 3), w)
        pygame.draw.circle(surface, ink, (cx, cy + r * 2 // 3), w // 2 + 1)
    elif tone is Tone.ERROR:
        points = [
            (
                cx + r * math.cos(math.pi / 8 + k * math.pi / 4),
                cy + r * math.sin(math.pi / 8 + k * math.pi / 4),
            )
            for k in range(8)
        ]
        pygame.draw.polygon(surface, color, points)
        d = r // 2
        pygame.draw.line(surface, ink, (cx - d, cy - d), (cx + d, cy + d), w)
        pygame.draw.line(surface, ink, (cx - d, cy + d), (cx + d, cy - d), w)
    elif tone is Tone.OK:
        pygame.draw.circle(surface, color, (cx, cy), r)
        pygame.draw.lines(
            surface,
            ink,
            False,
            [(cx - r // 2, cy), (cx - r // 8, cy + r // 3), (cx + r // 2, cy - r // 3)],
            w,
        )
    else:
        pygame.draw.circle(surface, color, (cx, cy), r)
        pygame.draw.line(surface, ink, (cx, cy - r // 8), (cx, cy + r // 2), w)
        pygame.draw.circle(surface, ink, (cx, cy - r // 2 + w // 2), w // 2 + 1)


def _content(p: _Painter, box: pygame.Rect, s: float) -> None:
    """Lines above (a long one wrapped at word breaks rather than shrunk past reading), figures below them
    (label small, value large): rows share the height."""
    view, t = p.view, p.theme
    gap = round(8 * s)
    line_size = round(30 * s)
    while True:     # the largest line size whose wrapped lines all fit the box with the figures
        pieces = [piece for line in view.lines for piece in _wrap(line, box.w, line_size, view.rtl)]
        count = len(pieces) + len(view.figures)
        room = (box.h - gap * max(0, count - 1)) / max(1.0, len(pieces) + 1.6 * len(view.figures))
        if room >= _font("regular", line_size).get_height() or line_size <= round(14 * s):
            break
        line_size -= 1
    rows: list[tuple[str, str | None]] = [(piece, None) for piece in pieces] + [
        (f.label, f.value) for f in view.figures]
    if not rows:
        return
    heights = [1.0 if value is None else 1.6 for _, value in rows]
    unit = min((box.h - gap * (len(rows) - 1)) / sum(heights), 64 * s)   # few rows: a block, centred
    y = box.y + (box.h - unit * sum(heights) - gap * (len(rows) - 1)) / 2
    for (label, value), share in zip(rows, heights, strict=True):
        h = int(unit * share)
        row = pygame.Rect(box.x, int(y), box.w, h)
        if value is None:
            p.text(label, row, size=min(line_size, h), floor=round(14 * s), color=t.text)
        else:
            label_w = int(row.w * 0.42)
            start, end = row.inflate(0, 0), row.inflate(0, 0)
            start.w, end.w = label_w, row.w - label_w - gap
            if view.rtl:
                start.right, end.left = row.right, row.left
            else:
                end.right = row.right
            p.text(label, start, size=min(round(28 * s), h), floor=round(14 * s), color=t.muted)
            p.text(value, end, size=min(round(52 * s), h), floor=round(16 * s), color=t.text, weight="bold",
                   align="end")
        y += h + gap


def _wrap(text: str, width: int, size: int, rtl: bool) -> list[str]:
    """text in pieces (whole words, in reading order) that each fit width at size; a word wider than width
    stays whole and is shrunk when drawn."""
    font = _font("regular", size)
    pieces: list[str] = []
    for word in text.split(" "):
        joined = f"{pieces[-1]} {word}" if pieces else word
        if pieces and font.size(shape(joined, rtl))[0] <= width:
            pieces[-1] = joined
        else:
            pieces.append(word)
    return pieces or [text]


def _option(p: _Painter, key: str, label: str, box: pygame.Rect, fkey: int | None, s: float) -> None:
    """A touch target (at least 9 mm high at 800x480 on a 7" display) with the digit that picks it and, for
    the first four, the function key beside it."""
    t = p.theme
    radius = round(10 * s)
    pygame.draw.rect(p.surface, t.option, box, border_radius=radius)
    pygame.draw.rect(p.surface, t.border, box, width=max(1, round(t.border_width * s)), border_radius=radius)
    p.drawing.options.append((key, box.move(p.ox, p.oy)))
    pad = round(10 * s)
    tag_w = round(46 * s)
    tag = pygame.Rect(box.x + pad, box.y, tag_w, box.h)
    room = pygame.Rect(
        tag.right + pad, box.y, box.right - tag.right - 2 * pad - (tag_w if fkey else 0), box.h
    )
    p.text(
        key, tag, size=round(30 * s), floor=round(14 * s), color=t.option_text, weight="bold", align="center"
    )
    p.text(label, room, size=round(28 * s), floor=round(14 * s), color=t.option_text)
    if fkey is not None:
        fk = pygame.Rect(box.right - pad - tag_w, box.y, tag_w, box.h)
        p.text(f"F{fkey}", fk, size=round(20 * s), floor=round(12 * s), color=t.option_text, align="center")
