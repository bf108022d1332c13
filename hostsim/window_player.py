"""Playing the headless scenarios (hostsim.scenarios.SCENARIOS) in the simulator window.

A scenario runs in a thread against the window's own Simulator, through SteppedRun: each thing the driver
does (wait for the terminal to be ready, insert or pull a card, key a PIN, fill at a pump) is a step. At
speed the steps follow each other; step by step, each waits for the Step button. The current step's name
and, at the end, the scenario's failed checks are shown. Before it starts, the terminal is restarted if the
scenario runs it otherwise (SIM_OPTIONS: its pumps, its programs, the pulser site's lines or not), and the
pumps flow at the headless speed while it plays. A scenario that needs a part the window's simulator lacks
(the chip-wallet SAM, the pulser site) fails at once, saying so. A scenario that does not ask for the
pulser site runs with a terminal configured as a headless simulator without it would be: every pump on
the DART line, no GPIO header (the site's hardware keeps running, unused by the terminal).
A scenario expects a fresh forecourt: played on a forecourt already used, a check on counts may fail.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from contracts.errors import ForecourtError
from hostsim.scenarios import SCENARIOS, SIM_OPTIONS, Run
from hostsim.world import load_cards

__all__ = ["ScenarioPlayer", "ScenarioStopped", "Setup", "SteppedRun", "missing_part", "reconfigure"]

PLAY_FLOW_CL_PER_S = 1000.0     # the headless Simulator's default flow
PLAY_SITE_FLOW_CL_PER_S = 400.0  # ... and its pulser site's (hostsim.world caps it there)
# SIM_OPTIONS that need a part made with the Simulator: option -> (its attribute, what it is)
PARTS = {"pulser": ("site", "the pulser site (GPIO header, pumps 3 and 4)"),
         "purse": ("purse", "the chip-wallet SAM")}


class Setup(NamedTuple):
    """How the terminal runs for a scenario: its pumps, its programs, the pulser site's lines or not."""

    pumps: tuple[int, ...]
    programs: tuple[str, ...]
    site: bool

    @classmethod
    def wanted(cls, name: str) -> Setup:
        options = SIM_OPTIONS.get(name, {})
        return cls(tuple(options.get("terminal_pumps", (1,))), tuple(options.get("programs", ())),
                   bool(options.get("pulser", False)))


def missing_part(sim: Any, name: str) -> str:
    """What the scenario needs that the simulator was made without; "" when nothing."""
    options = SIM_OPTIONS.get(name, {})
    for option, (attribute, what) in PARTS.items():
        if options.get(option) and getattr(sim, attribute, None) is None:
            return f"{name} needs {what}: play it headless (forecourt sim --headless --scenario {name})"
    return ""


def reconfigure(sim: Any, setup: Setup) -> None:
    """Restart the terminal as the scenario runs it: its pumps, its programs, pumps 3 and 4 as the site's
    pulsers or on the DART line."""
    sim.programs = setup.programs
    if getattr(sim, "site", None) is None:
        sim.reconfigure_terminal(setup.pumps)
    else:
        sim.reconfigure_terminal(setup.pumps, site_lines=setup.site)


class ScenarioStopped(Exception):
    """The Stop button: the scenario ends at its next step."""


class SteppedRun(Run):
    """A scenario Run whose driver actions pass the player's gate first."""

    def __init__(self, sim: Any, player: ScenarioPlayer) -> None:
        super().__init__(sim)
        self.player = player

    def ready(self, timeout: float = 30.0) -> None:
        self.player.gate("wait until the terminal is ready")
        super().ready(timeout)

    def insert(self, index: int) -> int:
        self.player.gate(f"insert card: {load_cards()[index].name}")
        return super().insert(index)

    def remove(self) -> None:
        self.player.gate("take the card out")
        super().remove()

    def pin(self, digits: str) -> None:
        self.player.gate("key the PIN " + "*" * len(digits))
        super().pin(digits)

    def fill(self, pump: int, nozzle: int, volume_cl: int) -> None:
        self.player.gate(f"fill {volume_cl / 100:.2f} L at pump {pump}, nozzle {nozzle}")
        super().fill(pump, nozzle, volume_cl)

    def wait(self, screens: str | tuple[str, ...], since: int, timeout: float = 20.0) -> dict[str, Any]:
        names = screens if isinstance(screens, str) else " or ".join(screens)
        self.player.note(f"waiting for the screen {names}")
        self.player.check_stop()
        return super().wait(screens, since, timeout)


class ScenarioPlayer:
    """Chooses, starts, steps and stops a scenario; its fields are what the window shows."""

    def __init__(self, sim: Any, names: list[str] | None = None) -> None:
        self.sim = sim
        self.names = names if names is not None else list(SCENARIOS)
        self.index = 0
        self.state = "idle"             # idle | running | stepping | ok | failed | stopped
        self.step = ""                  # the current (or next, when stepping) step's name
        self.detail = ""                # what it waits for, or why it failed
        self.failures: list[str] = []
        self.steps_done = 0
        self._stepwise = False
        self._go = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # how the terminal runs now: as the simulator configured it at its start
        self.setup = Setup(tuple(getattr(sim, "terminal_pumps", (1,))), tuple(getattr(sim, "programs", ())),
                           getattr(sim, "site", None) is not None)

    @property
    def name(self) -> str:
        return self.names[self.index]

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def choose(self, delta: int) -> None:
        if not self.busy:
            self.index = (self.index + delta) % len(self.names)
            self.state, self.step, self.detail, self.failures = "idle", "", "", []

    def play(self) -> None:
        """At speed: start, or let a stepped run go on without stopping."""
        self._stepwise = False
        self._go.set()
        if not self.busy:
            self._start()

    def step_once(self) -> None:
        """Start step by step, or let the waiting step run."""
        if not self.busy:
            self._stepwise = True
            self._start()
            return
        self._stepwise = True
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- called from the scenario's thread ----------------------------------------------------------
    def gate(self, step: str) -> None:
        self.check_stop()
        self.step, self.detail = step, ""
        if self._stepwise:
            self.state = "stepping"
            self._go.wait()
            self._go.clear()
            self.check_stop()
        self.state = "running"
        self.steps_done += 1

    def note(self, detail: str) -> None:
        self.detail = detail

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise ScenarioStopped(self.step)

    def _start(self) -> None:
        self._stop.clear()
        self._go.clear()
        self.state, self.step, self.detail, self.failures, self.steps_done = "running", "", "", [], 0
        self._thread = threading.Thread(target=self._run, args=(self.name,), name="scenario", daemon=True)
        self._thread.start()

    def _run(self, name: str) -> None:
        sim = self.sim
        listeners = len(sim.panel.listeners)
        pumps = list(sim.pump_line.pumps.values())
        flows = [p.flow_cl_per_s for p in pumps]
        site = getattr(sim, "site", None)
        site_parts = [site.meter, site.node] if site is not None else []
        site_flows = [part.flow for part in site_parts]
        rules = sim.acquirer_rules
        try:
            missing = missing_part(sim, name)
            if missing:
                raise RuntimeError(missing)
            wanted = Setup.wanted(name)
            if wanted != self.setup:
                pulser = " with the pulser site" if wanted.site else ""
                self.gate(f"restart the terminal for pumps {', '.join(map(str, wanted.pumps))}{pulser}")
                self.setup = wanted
                reconfigure(sim, wanted)
            for p in pumps:
                p.flow_cl_per_s = PLAY_FLOW_CL_PER_S
            for part in site_parts:
                part.flow = PLAY_SITE_FLOW_CL_PER_S
            run = SteppedRun(sim, self)
            SCENARIOS[name](run)
            self.failures = list(run.checks)
            self.state = "failed" if self.failures else "ok"
            self.step, self.detail = "done", ""
        except ScenarioStopped:
            self.state, self.detail = "stopped", ""
        except (TimeoutError, ForecourtError, OSError, RuntimeError, KeyError) as exc:
            self.state, self.failures = "failed", [f"{type(exc).__name__}: {exc}"]
        finally:
            for p, flow in zip(pumps, flows, strict=True):
                p.flow_cl_per_s = flow
            for part, flow in zip(site_parts, site_flows, strict=True):
                part.flow = flow
            del sim.panel.listeners[listeners:]
            sim.acquirer_rules = rules
