"""The simulator window's own-hardware side (issue 17): the pulser pumps and the terminal's housing.

SiteControls works on a started hostsim.pulser_site.PulserSite: pump 3 behind its pump node, pump 4 wired to
the terminal's GPIO header, the door, tamper and paper-low switches, and the LEDs and buzzer read back from
the header. Only what the simulated hardware knows is shown: the node's own state and count for pump 3;
for pump 4 the relays' levels on the header and the meter's pulses since the nozzle was lifted (the
terminal's view of a sale is its own). Each action returns the line the window shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firmware.receipt import format_litres
from hostsim.pulser_site import GPIO_PUMP, NODE_PUMP, PINS

__all__ = ["LAMPS", "NODE_STATES", "SWITCHES", "PulserView", "SiteControls", "site_of"]

# drivers/pulser/meter.py's states (the DART numbering)
NODE_STATES = {1: "idle", 2: "authorized", 4: "filling", 5: "completed", 6: "preset reached"}
# switch -> (name, word when low, word when high): high is open / tripped / low on paper
SWITCHES = {"door": ("Door", "shut", "OPEN"), "tamper": ("Tamper", "intact", "TRIPPED"),
            "paper_low": ("Paper", "enough", "LOW")}
LAMPS = (("led_ready", "Ready"), ("led_fault", "Fault"), ("buzzer", "Buzzer"))
KINDS = {NODE_PUMP: "pulser · pump node", GPIO_PUMP: "pulser · terminal GPIO"}


def site_of(sim: Any) -> Any:
    """The simulator's PulserSite, or None (a simulator made without pulser=True, a test's fake)."""
    return getattr(sim, "site", None)


@dataclass(frozen=True)
class PulserView:
    """One pulser pump's row: what kind it is, its state in words, litres counted, the nozzle."""

    kind: str
    state: str
    volume_cl: int
    nozzle: str

    @property
    def litres(self) -> str:
        return f"{format_litres(self.volume_cl)} L"


class SiteControls:
    """The window's buttons on the site and what it shows of it."""

    def __init__(self, site: Any) -> None:
        self.site = site
        # pulses flow only while the nozzle is out, so the count last seen with it hung up is the count
        # at the lift: the base of the filling shown (the last one until the next lift)
        self._rest = self._base = site.meter.pulses
        self._out = False

    @property
    def pumps(self) -> dict[int, str]:
        """Pulser pump -> its kind, for the pumps panel."""
        return dict(KINDS)

    # -- pumps ------------------------------------------------------------------------------------------
    def view(self, pump: int) -> PulserView:
        if pump == NODE_PUMP:
            node = self.site.node
            core = node.core
            state = NODE_STATES.get(core.state, f"state {core.state}")
            if not core.k_milli:
                state += " (no K-factor yet)"
            return PulserView(KINDS[pump], state, core.volume_cl(), _nozzle(node.nozzle_out))
        meter, header = self.site.meter, self.site.header
        pulses = meter.pulses
        if meter.nozzle_out and not self._out:
            self._base, self._out = self._rest, True       # lifted since the last look
        elif not meter.nozzle_out:
            self._rest, self._out = pulses, False
        fast = header.level(PINS["relay"], default=False)
        slow = header.level(PINS["slow_relay"], default=False)
        relays = f"relay {_onoff(fast)}, slow relay {_onoff(slow)}"
        return PulserView(KINDS[pump], relays, pulses - self._base, _nozzle(meter.nozzle_out))

    def lift(self, pump: int) -> str:
        self._part(pump).lift()
        return f"pump {pump}: nozzle lifted"

    def hang(self, pump: int) -> str:
        self._part(pump).hang()
        return f"pump {pump}: nozzle hung up"

    def restart_node(self, pump: int) -> str:
        if pump != NODE_PUMP:
            return f"pump {pump} has no pump node"
        self.site.node.restart()
        return f"pump {pump}: the pump node restarted (power cycle)"

    def _part(self, pump: int) -> Any:
        return self.site.node if pump == NODE_PUMP else self.site.meter

    # -- housing ----------------------------------------------------------------------------------------
    def switch_on(self, name: str) -> bool:
        """The switch's input is high: the door open, the tamper loop tripped, the paper low."""
        return bool(self.site.header.input_level(PINS[name]))

    def switch_label(self, name: str) -> str:
        title, low, high = SWITCHES[name]
        return f"{title}: {high if self.switch_on(name) else low}"

    def toggle(self, name: str) -> str:
        if name not in SWITCHES:
            return f"unknown switch {name}"
        self.site.header.drive(PINS[name], not self.switch_on(name))
        return "terminal " + self.switch_label(name).lower().replace(":", "")

    def lamps(self) -> list[tuple[str, bool]]:
        """(name, lit) of the LEDs and the buzzer as the terminal drives them (off until it does)."""
        return [(label, bool(self.site.header.level(PINS[pin], default=False))) for pin, label in LAMPS]

    def act(self, action: str, arg: Any) -> str:
        """A site button: pulser_lift | pulser_hang | node_restart (arg: the pump), switch (arg: its name)."""
        if action == "switch":
            return self.toggle(arg)
        handler = {"pulser_lift": self.lift, "pulser_hang": self.hang, "node_restart": self.restart_node}
        return handler[action](arg)


def _onoff(level: bool) -> str:
    return "on" if level else "off"


def _nozzle(out: bool) -> str:
    return "nozzle out" if out else "nozzle in"
