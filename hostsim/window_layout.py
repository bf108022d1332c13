"""Where everything sits in the simulator window: the panels, the buttons and hit-testing. No drawing, no I/O.

hostsim.window draws this layout and acts on clicks; the functions here are pure, so tests can check that
every button lies inside the window and that no two overlap, whatever the card list and the station hold.

Three columns under a status strip: the terminal's screen, keypad and the scenario player on the left; the
card picker (grouped by kind) and every pump of the station in the middle; the fault buttons, the printer's
paper and the terminal's log on the right. A simulator with the issue 17 site adds its pulser pumps to the
pumps (Lift, Hang up, Restart node: no trigger) and the housing's switches and lamps under the faults.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from hostsim.world import CardProfile

__all__ = [
    "CARD_MAX_ROWS",
    "FAULTS",
    "HOUSING",
    "KEYPAD_ROWS",
    "LEFT",
    "MIDDLE",
    "RIGHT",
    "SIZE",
    "STATUS",
    "TITLE_H",
    "Button",
    "Layout",
    "button_at",
    "card_buttons",
    "card_columns",
    "card_groups",
    "card_panel_height",
    "fault_buttons",
    "fit_scale",
    "housing_buttons",
    "keypad_buttons",
    "layout",
    "pulser_buttons",
    "pump_buttons",
    "scenario_buttons",
    "slot_buttons",
]

SIZE = (1600, 900)
STATUS = pygame.Rect(20, 10, 1560, 36)           # the status strip across the top
LEFT = pygame.Rect(20, 56, 520, 824)
MIDDLE = pygame.Rect(556, 56, 528, 824)
RIGHT = pygame.Rect(1100, 56, 480, 824)
KEYPAD_ROWS = (("1", "2", "3", "CANCEL"), ("4", "5", "6", "CLEAR"), ("7", "8", "9", "ENTER"),
               ("", "0", "", ""))
# (action arg, label): what each fault button does is hostsim.window_faults
FAULTS = (("broker_down", "Broker down"), ("broker_up", "Broker up"),
          ("acquirer_timeout", "Acquirer timeout"), ("noise", "Pump line noise"),
          ("pull_card", "Pull the card"), ("power_cut", "Power cut"))
# the terminal's housing switches (hostsim.window_site): the label drawn says the switch's position
HOUSING = (("door", "Door"), ("tamper", "Tamper"), ("paper_low", "Paper low"))

TITLE_H = 34                  # a panel's title row
CARD_ROW, CARD_GAP = 26, 4    # one card button, and the space between two
GROUP_H = 22                  # the kind's heading above its cards
CARD_MAX_ROWS = 6             # a group with more cards than this takes two columns
SLOT_BUTTON_W = 130           # "Swipe card" and "Remove card" in the card panel's title row
SCREEN_H, PANEL_GAP = 312, 12  # the screen keeps the terminal's 800x480 proportions
PUMP_ROW, PUMP_BUTTON_H = 92, 44
MIN_PUMP_ROW = 84             # rows shrink to this (buttons lower) to keep every pump above the window's foot
FAULT_ROW = 40
LAMP_H = 28                   # the housing's lamps under its switches


@dataclass(frozen=True)
class Button:
    """A clickable area: action is key | insert | swipe | remove | lift | squeeze | hang_up | fault |
    scenario | pulser_lift | pulser_hang | node_restart | switch, arg its parameter (a key, a card index,
    (pump, nozzle), a pump, a fault, a player verb, a housing switch)."""

    rect: pygame.Rect
    label: str
    action: str
    arg: Any = None
    sub: str = ""

    def contains(self, pos: tuple[int, int]) -> bool:
        return bool(self.rect.collidepoint(pos))


def button_at(buttons: Iterable[Button], pos: tuple[int, int]) -> Button | None:
    return next((b for b in buttons if b.contains(pos)), None)


def fit_scale(size: tuple[int, int], display: tuple[int, int], margin: float = 0.92) -> float:
    """The factor (at most 1) that fits the window into margin of a small display, keeping its proportions."""
    if display[0] <= 0 or display[1] <= 0:
        return 1.0
    return min(1.0, display[0] * margin / size[0], display[1] * margin / size[1])


def keypad_buttons(area: pygame.Rect) -> list[Button]:
    """The PIN-pad layout: digits on the left, CANCEL / CLEAR / ENTER down the right column."""
    gap = 10
    cols, rows = len(KEYPAD_ROWS[0]), len(KEYPAD_ROWS)
    w = (area.w - gap * (cols - 1)) // cols
    h = (area.h - gap * (rows - 1)) // rows
    return [Button(pygame.Rect(area.x + c * (w + gap), area.y + r * (h + gap), w, h), key, "key", key)
            for r, row in enumerate(KEYPAD_ROWS) for c, key in enumerate(row) if key]


def card_groups(profiles: Sequence[CardProfile]) -> list[tuple[str, list[int]]]:
    """The profiles' indices by kind, kinds in the order they first appear."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(profiles):
        groups.setdefault(p.kind, []).append(i)
    return list(groups.items())


def card_columns(count: int) -> int:
    """One column up to CARD_MAX_ROWS cards of a kind, two beyond."""
    return 1 if count <= CARD_MAX_ROWS else 2


def _group_rows(count: int) -> int:
    return math.ceil(count / card_columns(count))


def card_panel_height(profiles: Sequence[CardProfile]) -> int:
    rows = sum(_group_rows(len(ix)) for _, ix in card_groups(profiles))
    return TITLE_H + len(card_groups(profiles)) * GROUP_H + rows * (CARD_ROW + CARD_GAP) + 6


def slot_buttons(panel: pygame.Rect) -> list[Button]:
    """Swipe card, then Remove card, at the right end of the card panel's title row."""
    inner = panel.inflate(-20, 0)
    remove = pygame.Rect(inner.right - SLOT_BUTTON_W, panel.y + 5, SLOT_BUTTON_W, CARD_ROW)
    swipe = remove.move(-(SLOT_BUTTON_W + 8), 0)
    return [Button(swipe, "Swipe card", "swipe"), Button(remove, "Remove card", "remove")]


def card_buttons(panel: pygame.Rect, profiles: Sequence[CardProfile]) -> list[Button]:
    """The slot buttons in the panel's title row, then each kind's heading and its cards, down the columns."""
    inner = panel.inflate(-20, 0)
    buttons = slot_buttons(panel)
    y = panel.y + TITLE_H
    gap = 8
    for _kind, indices in card_groups(profiles):
        y += GROUP_H
        cols, rows = card_columns(len(indices)), _group_rows(len(indices))
        w = (inner.w - gap * (cols - 1)) // cols
        for k, i in enumerate(indices):
            col, row = divmod(k, rows)
            rect = pygame.Rect(inner.x + col * (w + gap), y + row * (CARD_ROW + CARD_GAP), w, CARD_ROW)
            buttons.append(Button(rect, profiles[i].name, "insert", i))
        y += rows * (CARD_ROW + CARD_GAP)
    return buttons


def group_headings(panel: pygame.Rect, profiles: Sequence[CardProfile]) -> list[tuple[str, int]]:
    """(kind, y) of each kind's heading in the card panel."""
    out, y = [], panel.y + TITLE_H
    for kind, indices in card_groups(profiles):
        out.append((kind, y + GROUP_H // 2))
        y += GROUP_H + _group_rows(len(indices)) * (CARD_ROW + CARD_GAP)
    return out


def pump_buttons(area: pygame.Rect, grades: Mapping[int, str], pump: int = 1) -> list[Button]:
    """Lift nozzle N for each nozzle of one pump, its trigger and hang up, in one row."""
    items: list[tuple[str, str, Any, str]] = [(f"Lift nozzle {n}", "lift", (pump, n), grades[n])
                                              for n in sorted(grades)]
    items += [("Squeeze", "squeeze", pump, "hold: flow"), ("Hang up", "hang_up", pump, "")]
    gap = 8
    w = (area.w - gap * (len(items) - 1)) // len(items)
    return [Button(pygame.Rect(area.x + i * (w + gap), area.y, w, area.h), label, action, arg, sub)
            for i, (label, action, arg, sub) in enumerate(items)]


def pulser_buttons(area: pygame.Rect, pump: int, kind: str) -> list[Button]:
    """A pulser pump's one nozzle: Lift and Hang up; a pump node's pump also Restart node. No trigger: fuel
    flows while the terminal's relays are on and the nozzle is out."""
    items: list[tuple[str, str, str]] = [("Lift nozzle", "pulser_lift", "the only one"),
                                         ("Hang up", "pulser_hang", "")]
    if "node" in kind:
        items.append(("Restart node", "node_restart", "power cycle"))
    gap = 8
    w = (area.w - gap * (len(items) - 1)) // len(items)
    return [Button(pygame.Rect(area.x + i * (w + gap), area.y, w, area.h), label, action, pump, sub)
            for i, (label, action, sub) in enumerate(items)]


def pump_row(panel: pygame.Rect, index: int, row: int = PUMP_ROW) -> pygame.Rect:
    """The band of the index-th pump in the pumps panel: its figures on top, its buttons below."""
    return pygame.Rect(panel.x + 10, panel.y + TITLE_H + index * row, panel.w - 20, row - 6)


def pump_row_height(room: int, count: int) -> int:
    """A pump's row: PUMP_ROW when the panel's room holds them all so, else less, down to MIN_PUMP_ROW."""
    return max(MIN_PUMP_ROW, min(PUMP_ROW, (room - TITLE_H) // max(1, count)))


def fault_buttons(panel: pygame.Rect) -> list[Button]:
    """The fault buttons, three to a row."""
    inner = panel.inflate(-20, 0)
    gap, cols = 8, 3
    w = (inner.w - gap * (cols - 1)) // cols
    top = panel.y + TITLE_H
    return [Button(pygame.Rect(inner.x + (i % cols) * (w + gap), top + (i // cols) * (FAULT_ROW + 6), w,
                               FAULT_ROW), label, "fault", name)
            for i, (name, label) in enumerate(FAULTS)]


def housing_buttons(panel: pygame.Rect) -> list[Button]:
    """The housing's switches, in the row under the fault buttons."""
    inner = panel.inflate(-20, 0)
    gap, cols = 8, 3
    w = (inner.w - gap * (cols - 1)) // cols
    top = panel.y + TITLE_H + 2 * (FAULT_ROW + 6)
    return [Button(pygame.Rect(inner.x + i * (w + gap), top, w, FAULT_ROW), label, "switch", name)
            for i, (name, label) in enumerate(HOUSING)]


def scenario_buttons(panel: pygame.Rect) -> list[Button]:
    """Previous / next scenario beside its name, then Play (at speed), Step and Stop."""
    inner = panel.inflate(-20, 0)
    y = panel.y + TITLE_H
    out = [Button(pygame.Rect(inner.x, y, 44, 34), "<", "scenario", "prev"),
           Button(pygame.Rect(inner.right - 44, y, 44, 34), ">", "scenario", "next")]
    gap, w = 8, (inner.w - 16) // 3
    for i, (verb, label) in enumerate((("play", "Play"), ("step", "Step"), ("stop", "Stop"))):
        out.append(Button(pygame.Rect(inner.x + i * (w + gap), y + 44, w, 38), label, "scenario", verb))
    return out


@dataclass(frozen=True)
class Layout:
    """The window's panels and every button on them."""

    status: pygame.Rect
    screen: pygame.Rect
    keypad: pygame.Rect
    scenario: pygame.Rect
    cards: pygame.Rect
    pumps: pygame.Rect
    faults: pygame.Rect
    receipt: pygame.Rect
    log: pygame.Rect
    buttons: list[Button]
    pump_numbers: tuple[int, ...]
    pulser: dict[int, str] = field(default_factory=dict)    # pulser pump -> its kind
    lamps: pygame.Rect | None = None                        # the housing's lamps, when it is shown
    pump_h: int = PUMP_ROW                                  # one pump's row in the pumps panel

    @property
    def panels(self) -> tuple[pygame.Rect, ...]:
        return (self.status, self.screen, self.keypad, self.scenario, self.cards, self.pumps, self.faults,
                self.receipt, self.log)

    @property
    def slot_status(self) -> pygame.Rect:
        """The room in the card panel's title row between its title and the slot buttons."""
        left = self.cards.x + 110
        return pygame.Rect(left, self.cards.y + 5, slot_buttons(self.cards)[0].rect.x - 10 - left, CARD_ROW)

    def pump_row(self, number: int) -> pygame.Rect:
        return pump_row(self.pumps, self.pump_numbers.index(number), self.pump_h)


def layout(profiles: Sequence[CardProfile], pumps: Mapping[int, Mapping[int, str]],
           pulser: Mapping[int, str] | None = None, *, housing: bool = False) -> Layout:
    """pumps: each DART pump's nozzles and their grades, {pump: {nozzle: grade}}; pulser: {pump: kind} of
    the pulser pumps (a number in both is a pulser pump); housing: the door, tamper and paper switches."""
    kinds = dict(pulser or {})
    pumps = {n: g for n, g in pumps.items() if n not in kinds}
    numbers = tuple(sorted({*pumps, *kinds}))
    screen = pygame.Rect(LEFT.x, LEFT.y, LEFT.w, SCREEN_H)
    keypad = pygame.Rect(LEFT.x, screen.bottom + PANEL_GAP, LEFT.w, 240)
    scenario = pygame.Rect(LEFT.x, keypad.bottom + PANEL_GAP, LEFT.w, LEFT.bottom - keypad.bottom - PANEL_GAP)
    cards = pygame.Rect(MIDDLE.x, MIDDLE.y, MIDDLE.w, card_panel_height(profiles))
    room = MIDDLE.bottom - cards.bottom - PANEL_GAP
    row = pump_row_height(room, len(numbers))
    pumps_rect = pygame.Rect(MIDDLE.x, cards.bottom + PANEL_GAP, MIDDLE.w,
                             max(TITLE_H + len(numbers) * row, room))
    rows = 3 if housing else 2
    faults = pygame.Rect(RIGHT.x, RIGHT.y, RIGHT.w, TITLE_H + rows * (FAULT_ROW + 6) + 4 + LAMP_H * housing)
    receipt = pygame.Rect(RIGHT.x, faults.bottom + PANEL_GAP, RIGHT.w, 340)
    log = pygame.Rect(RIGHT.x, receipt.bottom + PANEL_GAP, RIGHT.w, RIGHT.bottom - receipt.bottom - PANEL_GAP)
    buttons = keypad_buttons(keypad) + card_buttons(cards, profiles) + scenario_buttons(scenario)
    for i, number in enumerate(numbers):
        band = pump_row(pumps_rect, i, row)
        high = min(PUMP_BUTTON_H, band.h - 40)
        area = pygame.Rect(band.x, band.bottom - high, band.w, high)
        if number in kinds:
            buttons += pulser_buttons(area, number, kinds[number])
        else:
            buttons += pump_buttons(area, pumps[number], number)
    buttons += fault_buttons(faults)
    lamps = None
    if housing:
        buttons += housing_buttons(faults)
        lamps = pygame.Rect(faults.x + 10, faults.bottom - LAMP_H - 4, faults.w - 20, LAMP_H)
    return Layout(STATUS, screen, keypad, scenario, cards, pumps_rect, faults, receipt, log, buttons,
                  numbers, kinds, lamps, row)
