"""`forecourt sim` with a display: the whole simulated forecourt in one pygame window.

Left: the terminal's screen (as the terminal shows it through the simulator's panel server) and its keypad.
Right: the card slot with a card picker, pump 1 with its nozzles and trigger, and the last printed receipt.
SimulatorWindow holds layout, hit-testing and drawing; run_window() only runs the event loop around it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from drivers.panel.pygame_panel import panel_key
from firmware.pump import PumpState
from firmware.receipt import WIDTH as RECEIPT_WIDTH
from firmware.receipt import format_litres
from hostsim.world import CardProfile, Simulator, load_cards
from ui.render import draw_screen, draw_text_block, monospace_font_path

__all__ = [
    "FLOW_CL_PER_S",
    "SIZE",
    "Button",
    "SimulatorWindow",
    "button_at",
    "card_buttons",
    "keypad_buttons",
    "pump_buttons",
    "run_window",
]

SIZE = (1100, 700)
TITLE = "forecourt simulator"
FLOW_CL_PER_S = 100.0        # 1 L/s (60 L/min, a truck-lane pump): slow enough to stop at a chosen volume
FLOW_LEAD_S = 0.2            # the trigger asks for this much flow ahead, renewed every frame while held
KEYPAD_ROWS = (("1", "2", "3", "CANCEL"), ("4", "5", "6", "CLEAR"), ("7", "8", "9", "ENTER"), ("", "0", "", ""))
HELP = "Keys: 0-9  Enter  Esc=Cancel  Backspace=Clear  hold Space=squeeze  Ctrl+Q=quit"

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

LEFT = pygame.Rect(20, 20, 500, 650)
RIGHT = pygame.Rect(540, 20, 540, 650)


@dataclass(frozen=True)
class Button:
    """A clickable area: action is key | insert | remove | lift | squeeze | hang_up, arg its parameter."""

    rect: pygame.Rect
    label: str
    action: str
    arg: Any = None
    sub: str = ""

    def contains(self, pos: tuple[int, int]) -> bool:
        return bool(self.rect.collidepoint(pos))


def keypad_buttons(area: pygame.Rect) -> list[Button]:
    """The PIN-pad layout: digits on the left, CANCEL / CLEAR / ENTER down the right column."""
    gap = 10
    cols, rows = len(KEYPAD_ROWS[0]), len(KEYPAD_ROWS)
    w = (area.w - gap * (cols - 1)) // cols
    h = (area.h - gap * (rows - 1)) // rows
    return [Button(pygame.Rect(area.x + c * (w + gap), area.y + r * (h + gap), w, h), key, "key", key)
            for r, row in enumerate(KEYPAD_ROWS) for c, key in enumerate(row) if key]


CARD_ROW, CARD_GAP, TITLE_H = 26, 4, 34


def card_buttons(panel: pygame.Rect, profiles: Sequence[CardProfile]) -> list[Button]:
    """The remove button in the panel's title row, then one row per card profile."""
    inner = panel.inflate(-20, 0)
    buttons = [Button(pygame.Rect(inner.right - 150, panel.y + 5, 150, CARD_ROW), "Remove card", "remove")]
    buttons += [Button(pygame.Rect(inner.x, panel.y + TITLE_H + i * (CARD_ROW + CARD_GAP), inner.w, CARD_ROW),
                       p.name, "insert", i) for i, p in enumerate(profiles)]
    return buttons


def card_panel_height(profiles: Sequence[CardProfile]) -> int:
    return TITLE_H + len(profiles) * (CARD_ROW + CARD_GAP) + 6


def pump_buttons(area: pygame.Rect, grades: dict[int, str]) -> list[Button]:
    """Lift nozzle N for each nozzle, the trigger and hang up, in one row."""
    items: list[tuple[str, str, int | None, str]] = [(f"Lift nozzle {n}", "lift", n, grades[n])
                                                     for n in sorted(grades)]
    items += [("Squeeze (flow)", "squeeze", None, "hold"), ("Hang up", "hang_up", None, "")]
    gap = 8
    w = (area.w - gap * (len(items) - 1)) // len(items)
    return [Button(pygame.Rect(area.x + i * (w + gap), area.y, w, area.h), label, action, arg, sub)
            for i, (label, action, arg, sub) in enumerate(items)]


def button_at(buttons: Iterable[Button], pos: tuple[int, int]) -> Button | None:
    return next((b for b in buttons if b.contains(pos)), None)


class SimulatorWindow:
    """Layout, input and drawing of the simulator window around a (started) Simulator-shaped object."""

    def __init__(self, sim: Any, *, pump: int = 1, profiles: Sequence[CardProfile] | None = None) -> None:
        self.sim = sim
        self.pump_number = pump
        self.profiles = list(profiles) if profiles is not None else load_cards()
        self.inserted: int | None = None
        self.squeezing = False
        self.status = ""
        self.starting = False
        self._requested: int | None = None    # pump volume up to which the held trigger has asked for flow
        self._flash: tuple[Button, float] | None = None
        self._fonts: dict[tuple[str | None, int], pygame.font.Font] = {}
        self._mono = monospace_font_path()
        self._receipt: tuple[str, pygame.Surface] | None = None
        self._layout()

    @property
    def pump(self) -> Any:
        return self.sim.pump_line.pump(self.pump_number)

    def _layout(self) -> None:
        self.screen_rect = pygame.Rect(LEFT.x, LEFT.y, LEFT.w, 290)
        self.keypad_rect = pygame.Rect(LEFT.x, self.screen_rect.bottom + 16, LEFT.w,
                                       LEFT.bottom - self.screen_rect.bottom - 16)
        self.card_rect = pygame.Rect(RIGHT.x, RIGHT.y, RIGHT.w, card_panel_height(self.profiles))
        self.pump_rect = pygame.Rect(RIGHT.x, self.card_rect.bottom + 12, RIGHT.w, 124)
        self.receipt_rect = pygame.Rect(RIGHT.x, self.pump_rect.bottom + 12, RIGHT.w,
                                        RIGHT.bottom - self.pump_rect.bottom - 12)
        self.buttons = keypad_buttons(self.keypad_rect)
        self.buttons += card_buttons(self.card_rect, self.profiles)
        self.buttons += pump_buttons(pygame.Rect(self.pump_rect.x + 10, self.pump_rect.y + TITLE_H,
                                                 self.pump_rect.w - 20, 46), dict(self.pump.grades))

    # -- input ------------------------------------------------------------------------------------------
    def handle_click(self, pos: tuple[int, int]) -> Button | None:
        """Act on a mouse press at pos; returns the button hit, if any."""
        button = button_at(self.buttons, pos)
        if button is None:
            return None
        self._flash = (button, time.monotonic() + 0.15)
        if button.action == "key":
            self.press(button.arg)
        elif button.action == "insert":
            profile = self.profiles[button.arg]
            self.sim.cards.insert(profile.make())
            self.inserted = button.arg
            self.status = f"inserted: {profile.name}"
        elif button.action == "remove":
            self.sim.cards.remove()
            self.inserted = None
            self.status = "card removed"
        elif button.action == "lift":
            self.pump.lift(button.arg)
        elif button.action == "hang_up":
            self.release()
            self.pump.hang_up()
        elif button.action == "squeeze":
            self.squeeze()
        return button

    def press(self, key: str) -> None:
        try:
            self.sim.panel.press(key)
        except OSError as exc:   # ConnectionError while the terminal is not connected (yet)
            self.status = f"key {key} not sent: {exc}"

    def squeeze(self) -> None:
        self.squeezing = True
        self._requested = None
        self.tick()

    def release(self) -> None:
        self.squeezing = False
        self._requested = None

    def handle_key(self, key: int, mod: int = 0) -> bool:
        """Keyboard: panel keys go to the terminal, Space is the trigger. False means quit (Ctrl+Q)."""
        if key == pygame.K_q and mod & pygame.KMOD_CTRL:
            return False
        if key == pygame.K_SPACE:
            self.squeeze()
            return True
        name = panel_key(key)
        if name is not None:
            self.press(name)
        return True

    def handle_events(self, events: Iterable[pygame.event.Event]) -> bool:
        """Dispatch a batch of pygame events; False when the window should close."""
        for event in events:
            if event.type == pygame.QUIT:
                return False
            if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
                self.handle_click(event.pos)
            elif event.type == pygame.MOUSEBUTTONUP and event.button == 1:
                self.release()
            elif event.type == pygame.KEYDOWN:
                if not self.handle_key(event.key, getattr(event, "mod", 0)):
                    return False
            elif event.type == pygame.KEYUP and event.key == pygame.K_SPACE:
                self.release()
        return True

    def tick(self) -> None:
        """Once a frame: while the trigger is held, keep asking the pump for a little more flow."""
        if not self.squeezing:
            return
        pump = self.pump
        if pump.state != PumpState.FILLING:
            self._requested = None     # no flow unless the pump was authorized and the nozzle lifted
            return
        if self._requested is None:
            self._requested = pump.volume_cl
        want = pump.volume_cl + max(1, int(getattr(pump, "flow_cl_per_s", FLOW_CL_PER_S) * FLOW_LEAD_S))
        if want > self._requested:
            pump.dispense(want - self._requested, wait=False)
            self._requested = want

    # -- drawing ----------------------------------------------------------------------------------------
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
        current = self.sim.panel.current
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
        self.text(surface, slot, (self.card_rect.x + 110, self.card_rect.y + 11), 20, MUTED)

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
            self.text(surface, button.label, (button.rect.x + 10, button.rect.centery), 22, TEXT, "midleft")
        elif button.sub:
            self.text(surface, button.label, (button.rect.centerx, button.rect.centery - 8), 22, TEXT, "center")
            self.text(surface, button.sub, (button.rect.centerx, button.rect.centery + 12), 18, MUTED, "center")
        else:
            self.text(surface, button.label, button.rect.center, 22, TEXT, "center")


def _start(sim: Simulator, failure: list[BaseException]) -> None:
    try:
        sim.start()
    except BaseException as exc:  # noqa: BLE001  (re-raised by run_window on the main thread)
        failure.append(exc)


def run_window(state_dir: str | None = None, *, max_frames: int | None = None, sim: Any = None,
               screenshot: str | Path | None = None, fps: int = 30) -> int:
    """Run the simulator window until it is closed (or for max_frames frames); returns the exit code 0.

    Without sim, a Simulator is created in state_dir (a temporary directory, removed afterwards, when None),
    started in the background while the window already shows, and always stopped on the way out. A sim
    passed in is used as it is and left running. screenshot saves the last frame as an image.
    """
    logging.basicConfig(level=logging.WARNING)
    own = sim is None
    keep = state_dir is not None or bool(os.environ.get("FORECOURT_KEEP_STATE"))
    path: Path | None = None
    if own:
        path = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="forecourt-sim-"))
    failure: list[BaseException] = []
    starter: threading.Thread | None = None
    try:
        if path is not None:
            sim = Simulator(path, flow_cl_per_s=FLOW_CL_PER_S)
            starter = threading.Thread(target=_start, args=(sim, failure), name="sim-start", daemon=True)
            starter.start()
        pygame.display.init()
        pygame.font.init()
        surface = pygame.display.set_mode(SIZE)
        pygame.display.set_caption(TITLE)
        window = SimulatorWindow(sim)
        clock = pygame.time.Clock()
        frames = 0
        while max_frames is None or frames < max_frames:
            window.starting = starter is not None and starter.is_alive()
            if failure or not window.handle_events(pygame.event.get()):
                break
            window.tick()
            window.draw(surface)
            pygame.display.flip()
            clock.tick(fps)
            frames += 1
        if screenshot is not None:
            pygame.image.save(surface, str(screenshot))
    finally:
        pygame.quit()
        if starter is not None:
            starter.join()
        if own and sim is not None:
            sim.stop()
        if path is not None and not keep:
            shutil.rmtree(path, ignore_errors=True)
    if failure:
        raise failure[0]
    return 0
