"""Drawing the simulator window's side panels: the status strip, the printer's paper, the log pane and the
scenario player; with the text helpers the whole window uses. The base of hostsim.window_draw.WindowPainter.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from hostsim.window_layout import TITLE_H, Layout
from hostsim.window_log import LogTail
from hostsim.window_status import Status
from ui.render import monospace_font_path

__all__ = ["BAD", "BG", "EDGE", "GOOD", "MIN_LABEL_SIZE", "MUTED", "PANEL", "TEXT", "PanelPainter"]

MIN_LABEL_SIZE = 14          # a label shrinks down to this font size to fit its button, then is shortened

BG = (22, 25, 31)
PANEL = (34, 38, 46)
EDGE = (56, 62, 74)
TEXT = (226, 229, 236)
MUTED = (140, 147, 162)
GOOD = (92, 196, 120)
BAD = (236, 96, 84)
WARN = (226, 182, 72)
PAPER = (246, 244, 236)
INK = (28, 28, 32)
TEAR = "- " * 21             # between two receipts on the paper
PAPER_SIZE, LOG_SIZE = 15, 14


def _marked(ok: bool | None, value: str) -> tuple[str, tuple[int, int, int]]:
    """A value with a word that says it besides its colour (nothing essential in colour alone)."""
    if ok is None:
        return value, TEXT
    return value, GOOD if ok else BAD


class PanelPainter:
    """Text helpers and the side panels; reads the window's state."""

    sim: Any
    layout: Layout
    strip: Status | None
    log: LogTail
    player: Any
    receipt_scroll: int
    log_scroll: int
    _fonts: dict[tuple[str | None, int], pygame.font.Font]
    _mono: str | None

    def _init_painter(self) -> None:
        self._mono = monospace_font_path()
        self._paper_cache: tuple[int, list[str]] = (-1, [])

    def font(self, size: int, path: str | None = None) -> pygame.font.Font:
        key = (path, size)
        if key not in self._fonts:
            self._fonts[key] = pygame.font.Font(path, size)
        return self._fonts[key]

    def text(self, surface: pygame.Surface, text: str, pos: tuple[int, int], size: int = 22,
             color: tuple[int, int, int] = TEXT, anchor: str = "topleft",
             path: str | None = None) -> pygame.Rect:
        img = self.font(size, path).render(text, True, color)
        rect = img.get_rect(**{anchor: pos})
        surface.blit(img, rect)
        return rect

    def text_fit(self, surface: pygame.Surface, text: str, width: int, pos: tuple[int, int], size: int = 22,
                 color: tuple[int, int, int] = TEXT, anchor: str = "topleft") -> pygame.Rect:
        """Text in at most width pixels: a smaller font first, down to MIN_LABEL_SIZE, then cut with "..."."""
        while size > MIN_LABEL_SIZE and self.font(size).size(text)[0] > width:
            size -= 1
        font = self.font(size)
        if font.size(text)[0] > width:
            while text and font.size(text + "...")[0] > width:
                text = text[:-1]
            text = text.rstrip() + "..."
        return self.text(surface, text, pos, size, color, anchor)

    def _panel(self, surface: pygame.Surface, rect: pygame.Rect, title: str, right: str = "") -> None:
        pygame.draw.rect(surface, PANEL, rect, border_radius=8)
        pygame.draw.rect(surface, EDGE, rect, width=1, border_radius=8)
        self.text(surface, title, (rect.x + 10, rect.y + 8), 24, TEXT)
        if right:
            self.text_fit(surface, right, rect.w // 2, (rect.right - 10, rect.y + 10), 20, MUTED, "topright")

    # -- status strip ---------------------------------------------------------------------------------
    def _draw_status(self, surface: pygame.Surface) -> None:
        rect = self.layout.status
        pygame.draw.rect(surface, PANEL, rect, border_radius=8)
        if self.strip is None:
            self.text(surface, "status: reading...", (rect.x + 12, rect.centery), 20, MUTED, "midleft")
            return
        x = rect.x + 12
        for label, value, ok in self.strip.items():
            shown, color = _marked(ok, value)
            x = self.text(surface, label, (x, rect.centery), 18, MUTED, "midleft").right + 6
            room = rect.right - 12 - x
            if room <= 20:
                break
            x = self.text_fit(surface, shown, room, (x, rect.centery), 20, color, "midleft").right + 22

    # -- printer's paper ------------------------------------------------------------------------------
    def _paper_lines(self) -> list[str]:
        receipts = list(self.sim.printer.receipts)
        if self._paper_cache[0] != len(receipts):
            lines: list[str] = []
            for i, receipt in enumerate(receipts):
                if i:
                    lines += ["", TEAR, ""]
                lines += receipt.splitlines()
            self._paper_cache = (len(receipts), lines)
        return self._paper_cache[1]

    def _draw_receipt(self, surface: pygame.Surface) -> None:
        rect = self.layout.receipt
        count = len(self.sim.printer.receipts)
        lines = self._paper_lines()
        font = self.font(PAPER_SIZE, self._mono)
        step = font.get_linesize()
        area = pygame.Rect(rect.x + 10, rect.y + TITLE_H, rect.w - 20, rect.h - TITLE_H - 10)
        visible = max(1, area.h // step)
        self.receipt_scroll = max(0, min(self.receipt_scroll, len(lines) - visible))
        where = "newest" if not self.receipt_scroll else f"{self.receipt_scroll} lines back"
        self._panel(surface, rect, "Printer paper", f"{count} printed, {where}" if count else "")
        if not lines:
            self.text(surface, "no receipt printed yet", area.center, 20, MUTED, "center")
            return
        pygame.draw.rect(surface, PAPER, area)
        end = len(lines) - self.receipt_scroll
        clip = surface.get_clip()
        surface.set_clip(area)
        for k, line in enumerate(lines[max(0, end - visible):end]):
            self.text(surface, line, (area.x + 8, area.y + 4 + k * step), PAPER_SIZE, INK, path=self._mono)
        surface.set_clip(clip)

    # -- log pane ----------------------------------------------------------------------------------------
    def _draw_log(self, surface: pygame.Surface) -> None:
        rect = self.layout.log
        lines = list(self.log.lines)
        self._panel(surface, rect, "Terminal log", "newest" if not self.log_scroll else "scrolled back")
        area = pygame.Rect(rect.x + 10, rect.y + TITLE_H, rect.w - 20, rect.h - TITLE_H - 8)
        font = self.font(LOG_SIZE, self._mono)
        step = font.get_linesize()
        visible = max(1, area.h // step)
        wrapped: list[tuple[str, tuple[int, int, int]]] = []
        end = len(lines) - self.log_scroll
        for line in lines[max(0, end - visible):end]:
            bad = " ERROR " in line or " CRITICAL " in line
            color = BAD if bad else WARN if " WARNING " in line else TEXT
            while font.size(line)[0] > area.w and len(line) > 8:
                cut = max(8, len(line) * area.w // max(1, font.size(line)[0]) - 1)
                wrapped.append((line[:cut], color))
                line = "    " + line[cut:]
            wrapped.append((line, color))
        if not wrapped:
            self.text(surface, "no log lines yet", area.center, 20, MUTED, "center")
        clip = surface.get_clip()
        surface.set_clip(area)
        for k, (line, color) in enumerate(wrapped[-visible:]):
            self.text(surface, line, (area.x, area.y + k * step), LOG_SIZE, color, path=self._mono)
        surface.set_clip(clip)

    # -- scenario player -----------------------------------------------------------------------------
    def _draw_scenario(self, surface: pygame.Surface) -> None:
        rect = self.layout.scenario
        p = self.player
        self._panel(surface, rect, "Scenario", p.state)
        name_at = (rect.centerx, rect.y + TITLE_H + 17)
        self.text_fit(surface, p.name, rect.w - 140, name_at, 24, TEXT, "center")
        y = rect.y + TITLE_H + 94
        step = p.step or ("press Step (F5) or Play (F6)" if p.state == "idle" else "")
        if p.state == "stepping":
            step = f"next: {step} (press Step)"
        self.text_fit(surface, f"step {p.steps_done}: {step}" if p.steps_done or p.step else step,
                      rect.w - 20, (rect.x + 10, y), 20, TEXT)
        if p.detail:
            self.text_fit(surface, p.detail, rect.w - 20, (rect.x + 10, y + 26), 18, MUTED)
        if p.state in ("ok", "failed", "stopped"):
            verdict = {"ok": ("passed: every check held", GOOD), "stopped": ("stopped", MUTED)}.get(
                p.state, (f"FAILED: {len(p.failures)} check(s)", BAD))
            self.text(surface, verdict[0], (rect.x + 10, y + 52), 20, verdict[1])
            for k, failure in enumerate(p.failures[:3]):
                self.text_fit(surface, failure, rect.w - 20, (rect.x + 10, y + 76 + 22 * k), 16, BAD)
