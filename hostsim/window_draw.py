"""Drawing the simulator window: panels, buttons, the terminal's screen, the pump's figures and the receipt.

WindowPainter is the drawing half of hostsim.window.SimulatorWindow, which keeps the state and handles input;
the painter only reads that state (and forgets the inserted card once the slot is found empty).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.pump import PumpState
from contracts.receipt import WIDTH as RECEIPT_WIDTH
from firmware.receipt import format_litres
from hostsim.window_layout import LEFT, RIGHT, SIZE, TITLE_H, Button, Layout
from ui.render import draw_screen, draw_text_block

__all__ = ["HELP", "MIN_LABEL_SIZE", "WindowPainter"]

HELP = "Keys: 0-9  Enter  Esc=Cancel  Backspace=Clear  hold Space=squeeze  Ctrl+Q=quit"
MIN_LABEL_SIZE = 14          # a label shrinks down to this font size to fit its button, then is shortened

BG = (22, 25, 31)
PANEL = (34, 38, 46)
EDGE = (56, 62, 74)
TEXT = (226, 229, 236)
MUTED = (140, 147, 162)
ACCENT = (86, 156, 240)
BUTTON = (62, 68, 82)
PRESSED = (120, 128, 146)
PAPER = (246, 244, 236)
INK = (28, 28, 32)
KEY_COLORS = {"CANCEL": (176, 54, 54), "CLEAR": (196, 156, 42), "ENTER": (42, 142, 74)}


class WindowPainter:
    """Draws a SimulatorWindow; the attributes below are the state it reads."""

    sim: Any
    pump_number: int
    inserted: int | None
    squeezing: bool
    starting: bool
    status: str
    layout: Layout
    buttons: list[Button]
    screen_rect: pygame.Rect
    card_rect: pygame.Rect
    pump_rect: pygame.Rect
    receipt_rect: pygame.Rect
    _flash: tuple[Button, float] | None
    _fonts: dict[tuple[str | None, int], pygame.font.Font]
    _mono: str | None
    _receipt: tuple[str, pygame.Surface] | None

    @property
    def pump(self) -> Any:
        return self.sim.pump_line.pump(self.pump_number)

    def font(self, size: int, path: str | None = None) -> pygame.font.Font:
        key = (path, size)
        if key not in self._fonts:
            self._fonts[key] = pygame.font.Font(path, size)
        return self._fonts[key]

    def text(self, surface: pygame.Surface, text: str, pos: tuple[int, int], size: int = 22,
             color: tuple[int, int, int] = TEXT, anchor: str = "topleft") -> pygame.Rect:
        img = self.font(size).render(text, True, color)
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

    def draw(self, surface: pygame.Surface) -> None:
        surface.fill(BG)
        self._draw_terminal(surface)
        self._draw_cards(surface)
        self._draw_pump(surface)
        self._draw_receipt(surface)
        for button in self.buttons:
            self._draw_button(surface, button)
        self.text(surface, HELP, (LEFT.x, SIZE[1] - 8), 18, MUTED, "bottomleft")
        if self.status:
            self.text(surface, self.status[:60], (RIGHT.right, SIZE[1] - 8), 18, MUTED, "bottomright")

    def _panel(self, surface: pygame.Surface, rect: pygame.Rect, title: str, right: str = "") -> None:
        pygame.draw.rect(surface, PANEL, rect, border_radius=8)
        pygame.draw.rect(surface, EDGE, rect, width=1, border_radius=8)
        self.text(surface, title, (rect.x + 10, rect.y + 8), 24, TEXT)
        if right:
            self.text(surface, right, (rect.right - 10, rect.y + 10), 20, MUTED, "topright")

    def _draw_terminal(self, surface: pygame.Surface) -> None:
        """The terminal's screen as the device draws it (ui.draw, from the View the terminal sent); a screen
        sent without a view (an older terminal) as its lines. terminal_drawing maps a click to an option."""
        from contracts.errors import MessageError
        from ui.draw import draw_view
        from ui.view import View

        current = self.sim.panel.current
        self.terminal_drawing = None
        if current is not None and "view" in current:
            try:
                view = View.from_doc(current["view"])
            except MessageError:
                view = None
            if view is not None:
                rect = self.screen_rect
                self.terminal_drawing = draw_view(surface.subsurface(rect), view, origin=rect.topleft)
                return
        if current is None:
            lines: Sequence[str] = ("Starting..." if self.starting else "Terminal not connected",)
            title = "terminal"
        else:
            lines, title = current.get("lines") or ("",), f"terminal - {current.get('screen', '?')}"
        draw_screen(surface, self.screen_rect, lines, title=title)

    def _draw_cards(self, surface: pygame.Surface) -> None:
        card_in = getattr(self.sim.cards, "card", True) is not None
        if not card_in:
            self.inserted = None
        self._panel(surface, self.card_rect, "Card slot")
        slot = "empty - click a card to insert it" if self.inserted is None else "card inserted"
        room = self.layout.slot_status
        self.text_fit(surface, slot, room.w, (room.x, room.centery), 20, MUTED, "midleft")

    def _draw_pump(self, surface: pygame.Surface) -> None:
        pump = self.pump
        state = pump.state.value.replace("_", " ") if isinstance(pump.state, PumpState) else str(pump.state)
        self._panel(surface, self.pump_rect, f"Pump {self.pump_number}", state)
        if pump.nozzle_out:
            nozzle = f"nozzle {pump.nozzle} out ({pump.grades.get(pump.nozzle, '?')})"
        else:
            nozzle = "all nozzles in"
        y = self.pump_rect.bottom - 22
        x = self.text(surface, "volume", (self.pump_rect.x + 12, y), 20, MUTED, "midleft").right
        x = self.text(surface, f"{format_litres(pump.volume_cl)} L", (x + 8, y), 36, TEXT, "midleft").right
        x = self.text(surface, "amount", (max(x + 24, self.pump_rect.x + 200), y), 20, MUTED, "midleft").right
        self.text(surface, f"{pump.amount_cents // 100}.{pump.amount_cents % 100:02d}", (x + 8, y), 36, TEXT,
                  "midleft")
        self.text(surface, nozzle, (self.pump_rect.right - 12, y), 20, MUTED, "midright")

    def _draw_receipt(self, surface: pygame.Surface) -> None:
        receipts = list(self.sim.printer.receipts)
        self._panel(surface, self.receipt_rect, "Receipt", f"{len(receipts)} printed")
        area = self.receipt_rect.inflate(-20, 0)
        area.y, area.h = self.receipt_rect.y + TITLE_H, self.receipt_rect.h - TITLE_H - 10
        if not receipts:
            self.text(surface, "no receipt printed yet", area.center, 20, MUTED, "center")
            return
        if self._receipt is None or self._receipt[0] != receipts[-1]:
            self._receipt = (receipts[-1], self._paper(receipts[-1], area.size))
        paper = self._receipt[1]
        surface.blit(paper, paper.get_rect(midtop=area.midtop))

    def _paper(self, text: str, size: tuple[int, int]) -> pygame.Surface:
        """The receipt as a strip of paper as wide as its text, at most size."""
        ink = pygame.Surface(size, pygame.SRCALPHA)
        used = draw_text_block(ink, ink.get_rect().inflate(-24, -16), text, color=INK, columns=RECEIPT_WIDTH,
                               mono_path=self._mono, max_size=20)
        paper = pygame.Surface((min(size[0], used.w + 24), min(size[1], used.h + 16)))
        paper.fill(PAPER)
        paper.blit(ink, (0, 0), paper.get_rect())
        return paper

    def _draw_button(self, surface: pygame.Surface, button: Button) -> None:
        color = KEY_COLORS.get(button.arg, BUTTON) if button.action == "key" else BUTTON
        if button.action == "insert" and button.arg == self.inserted:
            color = ACCENT
        flash = self._flash is not None and self._flash[0] == button and time.monotonic() < self._flash[1]
        if flash or (button.action == "squeeze" and self.squeezing):
            color = PRESSED
        pygame.draw.rect(surface, color, button.rect, border_radius=6)
        if button.action == "key":
            size = 44 if len(button.label) == 1 else 30
            self.text(surface, button.label, button.rect.center, size, TEXT, "center")
        elif button.action == "insert":
            self.text_fit(surface, button.label, button.rect.w - 16,
                          (button.rect.x + 8, button.rect.centery), 22, TEXT, "midleft")
        elif button.sub:
            self.text(surface, button.label, (button.rect.centerx, button.rect.centery - 8), 22, TEXT,
                      "center")
            self.text(surface, button.sub, (button.rect.centerx, button.rect.centery + 12), 18, MUTED,
                      "center")
        else:
            self.text(surface, button.label, button.rect.center, 22, TEXT, "center")
