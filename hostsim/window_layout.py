"""Where everything sits in the simulator window: the panels, the buttons and hit-testing. No drawing, no I/O.

hostsim.window draws this layout and acts on clicks; the functions here are pure, so tests can check that
every button lies inside the window and that no two overlap, whatever the card list holds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from hostsim.world import CardProfile

__all__ = [
    "CARD_MAX_ROWS",
    "KEYPAD_ROWS",
    "LEFT",
    "RIGHT",
    "SIZE",
    "TITLE_H",
    "Button",
    "Layout",
    "button_at",
    "card_buttons",
    "card_columns",
    "card_panel_height",
    "keypad_buttons",
    "layout",
    "pump_buttons",
    "slot_buttons",
]

SIZE = (1100, 700)
LEFT = pygame.Rect(20, 20, 500, 650)
RIGHT = pygame.Rect(540, 20, 540, 650)
KEYPAD_ROWS = (("1", "2", "3", "CANCEL"), ("4", "5", "6", "CLEAR"), ("7", "8", "9", "ENTER"),
               ("", "0", "", ""))

TITLE_H = 34                  # a panel's title row
CARD_ROW, CARD_GAP = 26, 4    # one card button, and the space between two
CARD_MAX_ROWS = 6             # more cards than this go into further columns, so the receipt keeps its room
SLOT_BUTTON_W = 130           # "Swipe card" and "Remove card" in the card panel's title row
SCREEN_H, PUMP_H, PANEL_GAP = 290, 124, 12


@dataclass(frozen=True)
class Button:
    """A clickable area: action is key | insert | swipe | remove | lift | squeeze | hang_up,
    arg its parameter."""

    rect: pygame.Rect
    label: str
    action: str
    arg: Any = None
    sub: str = ""

    def contains(self, pos: tuple[int, int]) -> bool:
        return bool(self.rect.collidepoint(pos))


def button_at(buttons: Iterable[Button], pos: tuple[int, int]) -> Button | None:
    return next((b for b in buttons if b.contains(pos)), None)


def keypad_buttons(area: pygame.Rect) -> list[Button]:
    """The PIN-pad layout: digits on the left, CANCEL / CLEAR / ENTER down the right column."""
    gap = 10
    cols, rows = len(KEYPAD_ROWS[0]), len(KEYPAD_ROWS)
    w = (area.w - gap * (cols - 1)) // cols
    h = (area.h - gap * (rows - 1)) // rows
    return [Button(pygame.Rect(area.x + c * (w + gap), area.y + r * (h + gap), w, h), key, "key", key)
            for r, row in enumerate(KEYPAD_ROWS) for c, key in enumerate(row) if key]


def card_columns(count: int) -> int:
    """One column up to CARD_MAX_ROWS cards, then as many columns as keep each at most that tall."""
    return max(1, math.ceil(count / CARD_MAX_ROWS))


def card_panel_height(profiles: Sequence[CardProfile]) -> int:
    rows = math.ceil(len(profiles) / card_columns(len(profiles)))
    return TITLE_H + rows * (CARD_ROW + CARD_GAP) + 6


def slot_buttons(panel: pygame.Rect) -> list[Button]:
    """Swipe card, then Remove card, at the right end of the card panel's title row."""
    inner = panel.inflate(-20, 0)
    remove = pygame.Rect(inner.right - SLOT_BUTTON_W, panel.y + 5, SLOT_BUTTON_W, CARD_ROW)
    swipe = remove.move(-(SLOT_BUTTON_W + 8), 0)
    return [Button(swipe, "Swipe card", "swipe"), Button(remove, "Remove card", "remove")]


def card_buttons(panel: pygame.Rect, profiles: Sequence[CardProfile]) -> list[Button]:
    """The slot buttons in the panel's title row, then the card profiles, down each column in turn."""
    inner = panel.inflate(-20, 0)
    cols = card_columns(len(profiles))
    rows = math.ceil(len(profiles) / cols)
    gap = 8
    w = (inner.w - gap * (cols - 1)) // cols
    buttons = slot_buttons(panel)
    for i, p in enumerate(profiles):
        col, row = divmod(i, rows)
        rect = pygame.Rect(inner.x + col * (w + gap), panel.y + TITLE_H + row * (CARD_ROW + CARD_GAP), w,
                           CARD_ROW)
        buttons.append(Button(rect, p.name, "insert", i))
    return buttons


def pump_buttons(area: pygame.Rect, grades: dict[int, str]) -> list[Button]:
    """Lift nozzle N for each nozzle, the trigger and hang up, in one row."""
    items: list[tuple[str, str, int | None, str]] = [(f"Lift nozzle {n}", "lift", n, grades[n])
                                                     for n in sorted(grades)]
    items += [("Squeeze (flow)", "squeeze", None, "hold"), ("Hang up", "hang_up", None, "")]
    gap = 8
    w = (area.w - gap * (len(items) - 1)) // len(items)
    return [Button(pygame.Rect(area.x + i * (w + gap), area.y, w, area.h), label, action, arg, sub)
            for i, (label, action, arg, sub) in enumerate(items)]


@dataclass(frozen=True)
class Layout:
    """The window's panels, top to bottom on each side, and every button on them."""

    screen: pygame.Rect
    keypad: pygame.Rect
    cards: pygame.Rect
    pump: pygame.Rect
    receipt: pygame.Rect
    buttons: list[Button]

    @property
    def slot_status(self) -> pygame.Rect:
        """The room in the card panel's title row between its title and the slot buttons."""
        left = self.cards.x + 110
        return pygame.Rect(left, self.cards.y + 5, slot_buttons(self.cards)[0].rect.x - 10 - left, CARD_ROW)


def layout(profiles: Sequence[CardProfile], grades: dict[int, str]) -> Layout:
    """Left: screen over keypad.
    Right: card panel (as tall as its cards need), pump, and the receipt below."""
    screen = pygame.Rect(LEFT.x, LEFT.y, LEFT.w, SCREEN_H)
    keypad = pygame.Rect(LEFT.x, screen.bottom + 16, LEFT.w, LEFT.bottom - screen.bottom - 16)
    cards = pygame.Rect(RIGHT.x, RIGHT.y, RIGHT.w, card_panel_height(profiles))
    pump = pygame.Rect(RIGHT.x, cards.bottom + PANEL_GAP, RIGHT.w, PUMP_H)
    receipt = pygame.Rect(RIGHT.x, pump.bottom + PANEL_GAP, RIGHT.w, RIGHT.bottom - pump.bottom - PANEL_GAP)
    buttons = keypad_buttons(keypad) + card_buttons(cards, profiles)
    buttons += pump_buttons(pygame.Rect(pump.x + 10, pump.y + TITLE_H, pump.w - 20, 46), grades)
    return Layout(screen, keypad, cards, pump, receipt, buttons)
