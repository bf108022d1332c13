"""`forecourt sim` with a display: the whole simulated forecourt in one pygame window.

Top: the status strip (broker, registry, acquirer, terminal, sync backlog, configuration version). Left: the
terminal's screen (as the terminal shows it through the simulator's panel server), its keypad and the
scenario player. Middle: the card slot with a picker of every simulated card, grouped by kind, and every
pump of the station with its nozzles, trigger and hang-up (a pulser pump: lift and hang up, no trigger).
Right: the fault buttons, the terminal's housing (door, tamper and paper switches, its lamps), the printer's
paper (scrollable) and the terminal's log, masked.
SimulatorWindow holds the state and handles input; where things sit is hostsim.window_layout, how they are
drawn hostsim.window_draw and hostsim.window_panels. run_window() only runs the event loop around it.
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
from hostsim.cards.emv_profile import profile_names
from hostsim.window_draw import WindowPainter
from hostsim.window_faults import Faults
from hostsim.window_layout import (
    SIZE,
    Button,
    button_at,
    card_buttons,
    fit_scale,
    keypad_buttons,
    layout,
    pump_buttons,
)
from hostsim.window_log import LogTail
from hostsim.window_player import ScenarioPlayer
from hostsim.window_site import SiteControls, site_of
from hostsim.window_status import Status, read_status
from hostsim.world import CardProfile, Simulator, load_cards

__all__ = [
    "FLOW_CL_PER_S",
    "SIZE",
    "Button",
    "SimulatorWindow",
    "button_at",
    "card_buttons",
    "keypad_buttons",
    "picker_cards",
    "pump_buttons",
    "run_window",
]

TITLE = "forecourt simulator"
WINDOW_PUMPS = (1, 2, 3, 4)  # the terminal's pumps: 1 and 2 on the DART line, 3 and 4 pulser dispensers
FLOW_CL_PER_S = 100.0        # 1 L/s (60 L/min, a truck-lane pump): slow enough to stop at a chosen volume
FLOW_LEAD_S = 0.2            # the trigger asks for this much flow ahead, renewed every frame while held
STATUS_EVERY_S = 1.0         # the status strip and the log pane are refreshed this often
SCROLL_KEYS = {pygame.K_PAGEUP: 1, pygame.K_PAGEDOWN: -1}


def picker_cards() -> list[CardProfile]:
    """The cards of hostsim/fixtures/cards.toml, then any EMV profile of hostsim/fixtures/emv that the
    fixture does not name (by its profile name), so a new profile shows up without another edit."""
    cards = load_cards()
    named = {c.fields.get("profile") for c in cards if c.kind == "emv"}
    extra = [n for n in profile_names() if n not in named]
    return cards + [CardProfile(n, "emv", {"name": n, "profile": n}) for n in extra]


class SimulatorWindow(WindowPainter):
    """State and input of the simulator window around a (started) Simulator-shaped object;
    drawn by its base."""

    def __init__(self, sim: Any, *, profiles: Sequence[CardProfile] | None = None) -> None:
        self.sim = sim
        self.profiles = list(profiles) if profiles is not None else picker_cards()
        self.inserted: int | None = None
        self.last_card: int | None = None      # the card last put in the slot: what the Swipe button swipes
        self.squeezing: int | None = None      # the pump whose trigger is held
        self.selected_pump = min(sim.pump_line.pumps)   # the pump the Space bar's trigger works
        self.status = ""
        self.starting = False
        self.scale = 1.0                       # the window shown smaller than SIZE on a small display
        self.faults = Faults(sim)
        site = site_of(sim)
        self.site = SiteControls(site) if site is not None else None     # issue 17's own hardware
        self.player = ScenarioPlayer(sim)
        self.log = LogTail(Path(sim.state) / "terminal.log")
        self.strip: Status | None = None
        self.receipt_scroll = 0                # lines scrolled back from the newest receipt's end
        self.log_scroll = 0
        self._next_status = 0.0
        self._requested: int | None = None    # pump volume up to which the held trigger has asked for flow
        self._flash: tuple[Button, float] | None = None
        self._fonts: dict[tuple[str | None, int], pygame.font.Font] = {}
        self._init_painter()
        self._layout()

    def _layout(self) -> None:
        pumps = {n: dict(p.grades) for n, p in self.sim.pump_line.pumps.items()}
        pulser = self.site.pumps if self.site is not None else {}
        self.layout = layout(self.profiles, pumps, pulser, housing=self.site is not None)
        self.screen_rect, self.keypad_rect = self.layout.screen, self.layout.keypad
        self.card_rect, self.pumps_rect = self.layout.cards, self.layout.pumps
        self.receipt_rect, self.log_rect = self.layout.receipt, self.layout.log
        self.buttons = list(self.layout.buttons)

    def pump_of(self, number: int) -> Any:
        return self.sim.pump_line.pump(number)

    # -- input ------------------------------------------------------------------------------------------
    def handle_click(self, pos: tuple[int, int]) -> Button | None:
        """Act on a mouse press at pos (window coordinates); returns the button hit, if any."""
        button = button_at(self.buttons, pos)
        if button is None:
            self._touch(pos)
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
            pump, nozzle = button.arg
            self.selected_pump = pump
            self.pump_of(pump).lift(nozzle)
        elif button.action == "hang_up":
            self.release()
            self.pump_of(button.arg).hang_up()
        elif button.action == "squeeze":
            self.squeeze(button.arg)
        elif button.action in SITE_ACTIONS and self.site is not None:
            self.status = self.site.act(button.action, button.arg)
            if button.action in ("switch", "node_restart"):
                self.log.note(self.status)
        elif button.action in ("fault", "scenario") and self.starting:
            self.status = "wait: the forecourt is still starting"
        elif button.action == "fault":
            self.status = self.faults.run(button.arg)
            self.log.note(self.status)
            self._next_status = 0.0
        elif button.action == "scenario":
            self.scenario(button.arg)
        return button

    def _touch(self, pos: tuple[int, int]) -> None:
        """A touch on the terminal's screen: the option drawn there is pressed, as on the touch display."""
        drawing = getattr(self, "terminal_drawing", None)
        key = drawing.key_at(pos) if drawing is not None and self.screen_rect.collidepoint(pos) else None
        if key is not None:
            self.press(key)

    def scenario(self, verb: str) -> None:
        if verb in ("prev", "next"):
            self.player.choose(-1 if verb == "prev" else 1)
        elif verb == "play":
            self.player.play()
        elif verb == "step":
            self.player.step_once()
        elif verb == "stop":
            self.player.stop()

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

    def squeeze(self, pump: int | None = None) -> None:
        if (self.selected_pump if pump is None else pump) in self.layout.pulser:
            return                             # a pulser pump has no trigger (Space bar on one: nothing)
        self.squeezing = self.selected_pump if pump is None else pump
        self.selected_pump = self.squeezing
        self._requested = None
        self.tick()

    def release(self) -> None:
        self.squeezing = None
        self._requested = None

    def scroll(self, pos: tuple[int, int], lines: int) -> None:
        """The wheel over the paper or the log: lines > 0 scrolls back (older)."""
        if self.log_rect.collidepoint(pos):
            self.log_scroll = max(0, min(len(self.log.lines) - 1, self.log_scroll + lines))
        else:
            self.receipt_scroll = max(0, self.receipt_scroll + lines)

    def handle_key(self, key: int, mod: int = 0) -> bool:
        """Keyboard: panel keys go to the terminal, Space is the trigger, F5 steps, F6 plays, F7 stops the
        scenario, PageUp/PageDown scroll the paper. False means quit (Ctrl+Q)."""
        if key == pygame.K_q and mod & pygame.KMOD_CTRL:
            return False
        if key == pygame.K_SPACE:
            self.squeeze()
            return True
        verb = {pygame.K_F5: "step", pygame.K_F6: "play", pygame.K_F7: "stop"}.get(key)
        if verb is not None:
            if self.starting:
                self.status = "wait: the forecourt is still starting"
            else:
                self.scenario(verb)
            return True
        if key in SCROLL_KEYS:
            self.receipt_scroll = max(0, self.receipt_scroll + 10 * SCROLL_KEYS[key])
            return True
        name = panel_key(key)
        if name is not None:
            self.press(name)
        return True

    def _pos(self, pos: tuple[int, int]) -> tuple[int, int]:
        return (int(pos[0] / self.scale), int(pos[1] / self.scale))

    def handle_events(self, events: Iterable[pygame.event.Event]) -> bool:
        """Dispatch a batch of pygame events; False when the window should close."""
        for event in events:
            if event.type == pygame.QUIT:
                return False
            if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
                self.handle_click(self._pos(event.pos))
            elif event.type == pygame.MOUSEBUTTONUP and event.button == 1:
                self.release()
            elif event.type == pygame.MOUSEWHEEL:
                self.scroll(self._pos(pygame.mouse.get_pos()), 3 * event.y)
            elif event.type == pygame.KEYDOWN:
                if not self.handle_key(event.key, getattr(event, "mod", 0)):
                    return False
            elif event.type == pygame.KEYUP and event.key == pygame.K_SPACE:
                self.release()
        return True

    def refresh(self) -> None:
        """Read the status strip and the new log lines again (the loop calls it through tick); start the
        terminal again when it exited for an update or a remote restart, as its supervisor would."""
        self.sim.supervise_terminal()
        self.strip = read_status(self.sim)
        added = self.log.poll()
        if self.log_scroll:
            self.log_scroll = min(len(self.log.lines) - 1, self.log_scroll + added)
        self._next_status = time.monotonic() + STATUS_EVERY_S

    def tick(self) -> None:
        """Once a frame: refresh the strip now and then; while a trigger is held, ask its pump for a little
        more flow."""
        if time.monotonic() >= self._next_status and not self.starting:
            self.refresh()
        if self.squeezing is None:
            return
        pump = self.pump_of(self.squeezing)
        if pump.state != PumpState.FILLING:
            self._requested = None     # no flow unless the pump was authorized and the nozzle lifted
            return
        if self._requested is None:
            self._requested = pump.volume_cl
        want = pump.volume_cl + max(1, int(getattr(pump, "flow_cl_per_s", FLOW_CL_PER_S) * FLOW_LEAD_S))
        if want > self._requested:
            pump.dispense(want - self._requested, wait=False)
            self._requested = want


SITE_ACTIONS = ("pulser_lift", "pulser_hang", "node_restart", "switch")


def _start(sim: Simulator, failure: list[BaseException]) -> None:
    try:
        sim.start()
        if sim.web is not None:
            print(sim.web.banner(), flush=True)          # the back office's address and demo sign-ins
    except BaseException as exc:  # noqa: BLE001  (re-raised by run_window on the main thread)
        failure.append(exc)


def _display(scale_to: tuple[int, int] | None) -> tuple[pygame.Surface, pygame.Surface, float]:
    """The window (SIZE, or smaller on a small display) and the canvas the frame is drawn on."""
    desktop = scale_to or (pygame.display.get_desktop_sizes() or [SIZE])[0]
    scale = fit_scale(SIZE, desktop)
    shown = pygame.display.set_mode((round(SIZE[0] * scale), round(SIZE[1] * scale)))
    canvas = shown if scale == 1.0 else pygame.Surface(SIZE)
    return shown, canvas, scale


def run_window(state_dir: str | None = None, *, max_frames: int | None = None, sim: Any = None,
               screenshot: str | Path | None = None, fps: int = 30,
               display: tuple[int, int] | None = None, scenario: str | None = None) -> int:
    """Run the simulator window until it is closed (or for max_frames frames); returns the exit code 0.

    Without sim, a Simulator with the issue 17 site is created in state_dir (a temporary directory,
    removed afterwards, when None) with the terminal controlling WINDOW_PUMPS, started in the background
    while the window already shows, and always stopped on the way out. A sim passed in is used as it is
    and left running. screenshot saves the last frame (at full size) as an image; display pretends the
    screen is that big; scenario is the one the player offers first (`forecourt sim --scenario NAME` with
    a display).
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
            sim = Simulator(path, flow_cl_per_s=FLOW_CL_PER_S, web=True, pulser=True,
                            terminal_pumps=WINDOW_PUMPS)
            starter = threading.Thread(target=_start, args=(sim, failure), name="sim-start", daemon=True)
            starter.start()
        pygame.display.init()
        pygame.font.init()
        shown, canvas, scale = _display(display)
        pygame.display.set_caption(TITLE)
        window = SimulatorWindow(sim)
        window.scale = scale
        if scenario in window.player.names:
            window.player.index = window.player.names.index(scenario)
        clock = pygame.time.Clock()
        frames = 0
        while max_frames is None or frames < max_frames:
            window.starting = starter is not None and starter.is_alive()
            if failure or not window.handle_events(pygame.event.get()):
                break
            window.tick()
            window.draw(canvas)
            if canvas is not shown:
                pygame.transform.smoothscale(canvas, shown.get_size(), shown)
            pygame.display.flip()
            clock.tick(fps)
            frames += 1
        if screenshot is not None:
            pygame.image.save(canvas, str(screenshot))
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
