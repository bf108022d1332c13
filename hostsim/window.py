"""`forecourt sim` with a display: the whole simulated forecourt in one pygame window.

Left: the terminal's screen (as the terminal shows it through the simulator's panel server) and its keypad.
Right: the card slot with a card picker, pump 1 with its nozzles and trigger, and the last printed receipt.
SimulatorWindow holds the state and handles input; where things sit is hostsim.window_layout, how they are
drawn hostsim.window_draw. run_window() only runs the event loop around it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.pump import PumpState
from drivers.panel.pygame_panel import panel_key
from hostsim.window_draw import WindowPainter
from hostsim.window_layout import SIZE, Button, button_at, card_buttons, keypad_buttons, layout, pump_buttons
from hostsim.world import CardProfile, Simulator, load_cards
from ui.render import monospace_font_path

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

TITLE = "forecourt simulator"
FLOW_CL_PER_S = 100.0        # 1 L/s (60 L/min, a truck-lane pump): slow enough to stop at a chosen volume
FLOW_LEAD_S = 0.2            # the trigger asks for this much flow ahead, renewed every frame while held


class SimulatorWindow(WindowPainter):
    """State and input of the simulator window around a (started) Simulator-shaped object;
    drawn by its base."""

    def __init__(self, sim: Any, *, pump: int = 1, profiles: Sequence[CardProfile] | None = None) -> None:
        self.sim = sim
        self.pump_number = pump
        self.profiles = list(profiles) if profiles is not None else load_cards()
        self.inserted: int | None = None
        self.last_card: int | None = None      # the card last put in the slot: what the Swipe button swipes
        self.squeezing = False
        self.status = ""
        self.starting = False
        self._requested: int | None = None    # pump volume up to which the held trigger has asked for flow
        self._flash: tuple[Button, float] | None = None
        self._fonts: dict[tuple[str | None, int], pygame.font.Font] = {}
        self._mono = monospace_font_path()
        self._receipt: tuple[str, pygame.Surface] | None = None
        self._layout()

    def _layout(self) -> None:
        self.layout = layout(self.profiles, dict(self.pump.grades))
        self.screen_rect, self.keypad_rect = self.layout.screen, self.layout.keypad
        self.card_rect, self.pump_rect = self.layout.cards, self.layout.pump
        self.receipt_rect = self.layout.receipt
        self.buttons = list(self.layout.buttons)

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
            self.inserted = self.last_card = button.arg
            self.status = f"inserted: {profile.name}"
        elif button.action == "swipe":
            self.swipe()
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

    def swipe(self) -> None:
        """Swipe the stripe of the card in the slot through the reader head, as the driver does when asked."""
        # the card in the slot, or the one just taken out of it (a fallback swipe follows a pull)
        if self.inserted is not None and getattr(self.sim.cards, "card", True) is None:
            self.inserted = None
        if self.last_card is None:
            self.status = "insert a card first"
            return
        profile = self.profiles[self.last_card]
        track2 = profile.track2
        if track2 is None:
            self.status = "this card has no magnetic stripe"
            return
        try:
            self.sim.swipe.swipe(track2)
        except OSError as exc:   # ConnectionError while the terminal's reader is not connected (yet)
            self.status = f"swipe not sent: {exc}"
            return
        self.status = f"swiped: {profile.name}"     # never the track data itself

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
