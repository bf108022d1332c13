"""Drawing the terminal's display with pygame: a dark LCD-like panel with large centred lines.

Only APIs common to pygame-ce and classic pygame 2 are used, and only the font bundled with pygame
(`pygame.font.Font(None, size)`), so nothing depends on the fonts installed on the device.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

__all__ = [
    "BEZEL",
    "SCREEN_BG",
    "SCREEN_DIM",
    "SCREEN_TEXT",
    "Color",
    "draw_screen",
    "draw_text_block",
    "fit_font",
    "monospace_font_path",
]

Color = tuple[int, int, int]

BEZEL: Color = (38, 42, 48)
SCREEN_BG: Color = (10, 26, 22)
SCREEN_TEXT: Color = (150, 255, 190)
SCREEN_DIM: Color = (70, 130, 100)

_MONO_FONTS = "dejavusansmono,liberationmono,ubuntumono,notomono,couriernew,freemono,monospace"


def fit_font(lines: Sequence[str], width: int, height: int, *, max_size: int = 64, min_size: int = 10,
             path: str | None = None, spacing: float = 1.15) -> pygame.font.Font:
    """The largest font (at most max_size) in which every line fits width and all lines fit height."""
    count = max(1, len(lines))
    size = max(min_size, min(max_size, int(height / (count * spacing)) + 4))
    for _ in range(4):   # text width scales about linearly with the size: converge in a step or two
        font = pygame.font.Font(path, size)
        widest = max((font.size(line)[0] for line in lines), default=0)
        tall = font.get_linesize() * spacing * count
        scale = min(width / widest if widest else 1.0, height / tall if tall else 1.0)
        if scale >= 1.0 or size <= min_size:
            return font
        size = max(min_size, min(size - 1, int(size * scale)))
    return pygame.font.Font(path, size)


def draw_screen(surface: pygame.Surface, rect: pygame.Rect | tuple[int, int, int, int], lines: Sequence[str],
                *, title: str | None = None, text: Color = SCREEN_TEXT,
                background: Color = SCREEN_BG) -> None:
    """Draw a terminal display into rect: bezel, dark glass, an optional small title, centred lines."""
    outer = pygame.Rect(rect)
    pygame.draw.rect(surface, BEZEL, outer, border_radius=12)
    glass = outer.inflate(-2 * max(6, outer.w // 40), -2 * max(6, outer.h // 30))
    pygame.draw.rect(surface, background, glass, border_radius=6)
    area = glass.inflate(-glass.w // 12, -glass.h // 10)
    if title:
        small = pygame.font.Font(None, max(14, glass.h // 12))
        label = small.render(title, True, SCREEN_DIM)
        surface.blit(label, (glass.x + 10, glass.y + 6))
        top = glass.y + 8 + label.get_height()
        area = pygame.Rect(area.x, max(area.y, top), area.w, area.bottom - max(area.y, top))
    shown = [line for line in lines] or [""]
    font = fit_font(shown, area.w, area.h, max_size=max(16, glass.h // 4))
    step = int(font.get_linesize() * 1.15)
    y = area.centery - (step * len(shown)) // 2 + (step - font.get_linesize()) // 2
    for line in shown:
        img = font.render(line, True, text)
        surface.blit(img, img.get_rect(midtop=(area.centerx, y)))
        y += step


def monospace_font_path() -> str | None:
    """A monospaced system font, if fontconfig finds one; None otherwise (draw_text_block then uses cells)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pygame.font.match_font(_MONO_FONTS)
    except (OSError, ValueError):
        return None


def draw_text_block(surface: pygame.Surface, rect: pygame.Rect | tuple[int, int, int, int], text: str, *,
                    color: Color = (20, 20, 20), columns: int | None = None, mono_path: str | None = None,
                    max_size: int = 22) -> pygame.Rect:
    """Draw fixed-width text (a receipt) into rect so that its columns line up; returns the area it used.

    With mono_path (a monospaced font file) lines are rendered whole; otherwise each character is put in
    a fixed-width cell of the bundled proportional font. Lines that do not fit at the smallest size are cut.
    """
    area = pygame.Rect(rect)
    lines = text.splitlines() or [""]
    cols = max(columns or 0, max(len(line) for line in lines), 1)
    if mono_path is None:   # cells a little wider than a digit; the bundled font also runs small
        sample, max_size = ["0" * (cols + cols // 4)] * len(lines), max_size + max_size // 3
    else:
        sample = ["0" * cols] * len(lines)
    font = fit_font(sample, area.w, area.h, max_size=max_size, min_size=9, path=mono_path, spacing=1.0)
    cell = font.size("0")[0] if mono_path is not None else font.size(sample[0])[0] // cols
    step = font.get_linesize()
    y = area.y
    used = pygame.Rect(area.x, area.y, cols * cell, 0)
    for line in lines:
        if y + step > area.bottom:
            break
        used.h += step
        if mono_path is not None:
            surface.blit(font.render(line, True, color), (area.x, y))
        else:
            for i, ch in enumerate(line):
                if not ch.isspace():
                    glyph = font.render(ch, True, color)
                    surface.blit(glyph, (area.x + i * cell + (cell - glyph.get_width()) // 2, y))
        y += step
    return used
