"""Drawing the simulator window: the terminal's screen, the card picker, every pump and the buttons.

WindowPainter is the drawing half of hostsim.window.SimulatorWindow, which keeps the state and handles input;
the painter only reads that state (and forgets the inserted card once the slot is found empty). The side
panels (status strip, paper, log, scenario player) and the text helpers are hostsim.window_panels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.pump import PumpState
from firmware.receipt import format_litres
from hostsim.window_layout import LEFT, SIZE, Button, group_headings
from hostsim.window_panels import BAD, BG, GOOD, MIN_LABEL_SIZE, MUTED, TEXT, WARN, PanelPainter
from ui.render import draw_screen

__all__ = ["HELP", "MIN_LABEL_SIZE", "WindowPainter"]

HELP = ("Keys: 0-9  Enter  Esc=Cancel  Backspace=Clear  hold Space=trigger  F5=step  F6=play  F7=stop  "
        "PgUp/PgDn=paper  Ctrl+Q=quit")

ACCENT = (86, 156, 240)
BUTTON = (62, 68, 82)
PRESSED = (120, 128, 146)
ACTIVE = (150, 96, 40)       # a fault that is on (noise, a paused acquirer, a broker down)
LAMP_OFF = (48, 52, 60)       # a lamp that is not lit
KEY_COLORS = {"CANCEL": (176, 54, 54), "CLEAR": (196, 156, 42), "ENTER": (42, 142, 74)}
KINDS = {"fleet": "Fleet cards", "emv": "Bank cards (EMV)", "blank": "Other cards", "tag": "Contactless tags"}


class WindowPainter(PanelPainter):
    """Draws a SimulatorWindow; the attributes below are the state it reads."""

    sim: Any
    profiles: list[Any]
    inserted: int | None
    squeezing: int | None
    starting: bool
    status: str
    faults: Any
    site: Any                  # hostsim.window_site.SiteControls, or None
    buttons: list[Button]
    screen_rect: pygame.Rect
    card_rect: pygame.Rect
    pumps_rect: pygame.Rect
    _flash: tuple[Button, float] | None

    def draw(self, surface: pygame.Surface) -> None:
        surface.fill(BG)
        self._draw_status(surface)
        self._draw_terminal(surface)
        self._panel(surface, self.layout.keypad, "")
        self._draw_scenario(surface)
        self._draw_cards(surface)
        self._draw_pumps(surface)
        self._panel(surface, self.layout.faults, "Faults" if self.site is None else "Faults and housing")
        self._draw_lamps(surface)
        self._draw_receipt(surface)
        self._draw_log(surface)
        for button in self.buttons:
            self._draw_button(surface, button)
        self.text(surface, HELP, (LEFT.x, SIZE[1] - 4), 18, MUTED, "bottomleft")
        if self.status:
            self.text_fit(surface, self.status, 520, (SIZE[0] - 20, SIZE[1] - 4), 18, MUTED, "bottomright")

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
        if not card_in:
            slot = "empty - click a card to insert it"
        else:
            slot = "card inserted" if self.inserted is not None else "a card is in the reader"
        room = self.layout.slot_status
        self.text_fit(surface, slot, room.w, (room.x, room.centery), 20, MUTED, "midleft")
        for kind, y in group_headings(self.card_rect, self.profiles):
            title = KINDS.get(kind, kind.replace("_", " ").capitalize() + " cards")
            self.text(surface, title, (self.card_rect.x + 12, y), 18, MUTED, "midleft")

    def _draw_pumps(self, surface: pygame.Surface) -> None:
        note = "figures as each DART pump reports them"
        if self.site is not None:
            setup = self.player.setup
            pumps = ", ".join(map(str, setup.pumps))
            note = f"terminal: pumps {pumps}" + ("" if setup.site else ", DART only")
        self._panel(surface, self.pumps_rect, "Pumps", note)
        for number in self.layout.pump_numbers:
            band = self.layout.pump_row(number)
            if number in self.layout.pulser and self.site is not None:
                self._draw_pulser(surface, number, band)
                continue
            pump = self.sim.pump_line.pump(number)
            state = pump.state.value if isinstance(pump.state, PumpState) else str(pump.state)
            state = state.replace("_", " ")
            y = band.y + 14
            x = self.text(surface, f"Pump {number}", (band.x, y), 24, TEXT, "midleft").right + 10
            x = self.text(surface, state, (x, y), 18, MUTED, "midleft").right + 14
            litres = f"{format_litres(pump.volume_cl)} L"
            amount = f"{pump.amount_cents // 100}.{pump.amount_cents % 100:02d}"
            x = self.text(surface, litres, (max(x, band.x + 230), y), 26, TEXT, "midleft").right + 14
            self.text(surface, amount, (x, y), 26, TEXT, "midleft")
            if pump.nozzle_out:
                nozzle = f"nozzle {pump.nozzle} out ({pump.grades.get(pump.nozzle, '?')})"
            else:
                nozzle = "nozzles in"
            self.text(surface, nozzle, (band.right, y), 18, MUTED, "midright")

    def _draw_pulser(self, surface: pygame.Surface, number: int, band: pygame.Rect) -> None:
        """A pulser pump's row: its kind and state above, then litres counted and the nozzle."""
        view = self.site.view(number)
        y = band.y + 11
        x = self.text(surface, f"Pump {number}", (band.x, y), 24, TEXT, "midleft").right + 10
        self.text_fit(surface, view.kind, band.right - x, (x, y), 18, MUTED, "midleft")
        y += 20
        x = self.text(surface, view.litres, (band.x, y), 24, TEXT, "midleft").right + 14
        x = self.text_fit(surface, view.state, max(40, band.w - (x - band.x) - 110), (x, y), 18, TEXT,
                          "midleft").right
        self.text(surface, view.nozzle, (band.right, y), 18, MUTED, "midright")

    def _draw_lamps(self, surface: pygame.Surface) -> None:
        """The housing's LEDs and buzzer as the terminal drives them: a lamp, lit or dark, and the word."""
        rect = self.layout.lamps
        if rect is None or self.site is None:
            return
        x = rect.x
        for (label, lit), color in zip(self.site.lamps(), (GOOD, BAD, WARN), strict=True):
            centre = (x + 9, rect.centery)
            pygame.draw.circle(surface, color if lit else LAMP_OFF, centre, 8)
            pygame.draw.circle(surface, TEXT, centre, 8, width=1)
            word = f"{label} {'ON' if lit else 'off'}"
            shown = self.text(surface, word, (x + 22, rect.centery), 18, TEXT if lit else MUTED, "midleft")
            x = shown.right + 24

    def _fault_on(self, name: str) -> bool:
        if name == "noise":
            return bool(self.faults.noisy)
        if name == "acquirer_timeout":
            return bool(self.strip is not None and not self.strip.acquirer)
        if name == "broker_down":
            return bool(self.strip is not None and not self.strip.broker)
        return False

    def _draw_button(self, surface: pygame.Surface, button: Button) -> None:
        color = KEY_COLORS.get(button.arg, BUTTON) if button.action == "key" else BUTTON
        if button.action == "insert" and button.arg == self.inserted:
            color = ACCENT
        if button.action == "fault" and self._fault_on(button.arg):
            color = ACTIVE
        if button.action == "switch" and self.site is not None and self.site.switch_on(button.arg):
            color = ACTIVE             # the door open, the tamper loop tripped, the paper low
        flash = self._flash is not None and self._flash[0] == button and time.monotonic() < self._flash[1]
        if flash or (button.action == "squeeze" and self.squeezing == button.arg):
            color = PRESSED
        pygame.draw.rect(surface, color, button.rect, border_radius=6)
        if button.action == "key":
            size = 44 if len(button.label) == 1 else 30
            self.text(surface, button.label, button.rect.center, size, TEXT, "center")
        elif button.action == "insert":
            self.text_fit(surface, button.label, button.rect.w - 16,
                          (button.rect.x + 8, button.rect.centery), 22, TEXT, "midleft")
        elif button.action == "switch" and self.site is not None:
            self.text_fit(surface, self.site.switch_label(button.arg), button.rect.w - 10, button.rect.center,
                          20, TEXT, "center")
        elif button.action == "fault" and self._fault_on(button.arg):
            self.text_fit(surface, button.label + " (on)", button.rect.w - 10, button.rect.center, 20, TEXT,
                          "center")
        elif button.sub:
            x, y = button.rect.centerx, button.rect.centery
            self.text_fit(surface, button.label, button.rect.w - 8, (x, y - 8), 20, TEXT, "center")
            self.text_fit(surface, button.sub, button.rect.w - 8, (x, y + 12), 16, MUTED, "center")
        else:
            self.text_fit(surface, button.label, button.rect.w - 10, button.rect.center, 20, TEXT, "center")

