"""`forecourt provision pulser-calibrate`: a pulser pump's K-factor from a proving measure (docs/pulser.md,
docs/raspberry-pi.md).

The pump is authorized for a preset volume at the K-factor it runs now; the technician fills the proving
measure, the preset stops the pump, and the meter's pulse count for that filling divided by the litres
read off the measure is the new K. A change of more than 5 % is refused: a meter that far off needs a
repair, not a new K. The new K is kept in the state directory (drivers.pulser.setup) with who and when;
the terminal uses it from its next start. The filling is no sale: the journal never sees it (the pump's
electronic totals do, as they count every litre that left the pump).

Run it with the terminal stopped: a pump line has one master.

>>> new_k_milli(2000, 19_610)        # 2000 pulses for 19.610 L: 101.989 pulses per litre
101989
>>> round(deviation_pct(100_000, 101_989), 2)
1.99
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Self

from contracts.errors import ConfigError, ForecourtError, PumpError, PumpStateError
from contracts.pump import PumpState
from firmware.config import TerminalConfig

__all__ = ["MAX_DEVIATION_PCT", "NOMINAL_PRICE", "Calibration", "CalibrationRefused", "Fill", "Outcome",
           "check_change", "deviation_pct", "new_k_milli", "parse_litres", "record"]

log = logging.getLogger(__name__)

MAX_DEVIATION_PCT = 5.0
NOMINAL_PRICE = 1000          # 1.000 per litre (thousandths) when the terminal has no signed price yet
NOZZLE = 1                    # a pulser dispenser has one nozzle


class CalibrationRefused(ForecourtError):
    """The measured figures do not make a K-factor this tool may set (exit 1)."""


def parse_litres(text: str, *, key: str = "--measured") -> int:
    """Litres read off the proving measure ("19.61", "19,61") as millilitres; ConfigError when unusable.

    >>> parse_litres("19,61")
    19610
    """
    try:
        litres = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise ConfigError(f"{key}: litres as a number, e.g. 19.61", key=key) from None
    if not litres.is_finite() or not 0 < litres <= 10_000 or litres != litres.quantize(Decimal("0.001")):
        raise ConfigError(f"{key}: litres above 0 and at most 10000, to the millilitre at most", key=key)
    return int(litres * 1000)


def new_k_milli(pulses: int, measured_ml: int) -> int:
    """The K-factor (pulses per 1000 L) of a meter that gave `pulses` for `measured_ml`, rounded half up."""
    if pulses <= 0 or measured_ml <= 0:
        raise CalibrationRefused("the meter gave no pulses or nothing was measured: check the pulser's "
                                 "wiring and the measure", pulses=pulses)
    return (pulses * 1_000_000 * 2 + measured_ml) // (2 * measured_ml)


def deviation_pct(old_k: int, new_k: int) -> float:
    """How far the new K is from the old one, in percent of the old."""
    return (new_k - old_k) * 100 / old_k


def check_change(old_k: int, new_k: int, limit_pct: float = MAX_DEVIATION_PCT) -> float:
    """The deviation in percent; CalibrationRefused beyond +-limit_pct."""
    dev = deviation_pct(old_k, new_k)
    if abs(dev) > limit_pct:
        raise CalibrationRefused(f"the new K-factor is {dev:+.2f} % off the current one (at most "
                                 f"+-{limit_pct:g} %): a meter that far off needs repair, not a new K; "
                                 "nothing was changed", old_k=_k(old_k), new_k=_k(new_k))
    return dev


def _k(k_milli: int) -> str:
    return f"{k_milli / 1000:.3f}"


@dataclass(frozen=True)
class Fill:
    pump: int
    pulses: int          # the meter's pulses for the filling (the unit's own count)
    volume_cl: int       # the volume the pump reckoned at the K it ran
    k_milli: int         # that K
    preset_reached: bool


@dataclass(frozen=True)
class Outcome:
    pump: int
    old_k: int
    new_k: int
    deviation: float     # percent
    at: str
    by: str

    def lines(self) -> list[str]:
        change = f"{_k(self.old_k)} -> {_k(self.new_k)} pulses per litre ({self.deviation:+.2f} %)"
        return [f"pump {self.pump}: K-factor {change}",
                f"recorded at {self.at} by {self.by}; the terminal uses it from its next start"]


def record(cfg: TerminalConfig, fill: Fill, measured_ml: int, *, by: str,
           now: dt.datetime | None = None) -> Outcome:
    """Check the new K against the one the filling ran at and keep it; CalibrationRefused changes nothing."""
    from drivers.pulser.setup import record_calibration

    name = " ".join(by.split())
    if not name:
        raise ConfigError("--by: the technician's name", key="--by")
    new_k = new_k_milli(fill.pulses, measured_ml)
    dev = check_change(fill.k_milli, new_k)
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record_calibration(cfg.state_dir, fill.pump, new_k, at=at, by=name)
    log.info("pulser calibrated", extra={"pump": fill.pump, "k_milli": new_k, "old_k_milli": fill.k_milli})
    return Outcome(fill.pump, fill.k_milli, new_k, dev, at, name)


def signed_price(cfg: TerminalConfig, pump: int) -> int | None:
    """The nozzle's price in the terminal's last signed configuration, if it has one."""
    from firmware.configstore import ConfigStore
    from firmware.station import Station

    try:
        store = ConfigStore(cfg.state_dir, terminal=cfg.terminal.id)
        return Station.from_config(store.current, cfg.terminal.station).price(pump, NOZZLE) \
            if store.current else None
    except (ForecourtError, OSError, KeyError, TypeError):
        return None


class Calibration:
    """The pump's line opened as the terminal opens it (firmware.terminal.hardware.open_pumps)."""

    def __init__(self, cfg: TerminalConfig, pump: int, *, timeout: float = 5.0) -> None:
        if pump not in cfg.devices.pumps:
            raise ConfigError(f"pump {pump} is not one of devices.pumps", key="--pump")
        self.cfg, self.pump, self.timeout = cfg, pump, timeout
        self.gpio: Any = None
        self.pumps: Any = None
        self.line: Any = None
        self.price = NOMINAL_PRICE

    def open(self) -> Self:
        from drivers.devices import open_device
        from firmware.terminal.hardware import open_pumps

        self._no_open_sale()
        dev = self.cfg.devices
        try:
            self.gpio = open_device("gpio", dev.gpio) if dev.gpio else None
            self.pumps = open_pumps(dev, self.cfg.state_dir, self.gpio, self.cfg.gpio)
        except BaseException:
            self.close()
            raise
        lines = self.pumps.lines() if hasattr(self.pumps, "lines") else [self.pumps]
        self.line = next((line for line in lines
                          if hasattr(line, "meter") and self.pump in getattr(line, "units", {})), None)
        if self.line is None:
            self.close()
            raise ConfigError(f"pump {self.pump} is not a pulser pump (devices.pump_lines: pulser://, "
                              "node://)", key="--pump")
        return self

    def _no_open_sale(self) -> None:
        """A sale left open on the pump settles from its totals when the terminal recovers it: the
        calibration fill would move them and be charged to that customer. Refused until it is settled."""
        from firmware.sale.journal import Journal

        path = self.cfg.state_dir / "journal.db"
        if not path.exists():
            return
        journal = Journal(path)
        try:
            open_here = [rec for rec in journal.open_sales() if rec.pump == self.pump]
        finally:
            journal.close()
        if open_here:
            raise CalibrationRefused(f"pump {self.pump} has a sale still open: start the terminal and let it "
                                     "settle the sale first", pump=self.pump)

    @property
    def k_milli(self) -> int:
        """The K the pump runs at now (the last calibration, else the URL's k=)."""
        return int(self.line.k_milli[self.pump])

    def prepare(self) -> int:
        """Wait for the pump, give it a price; the price used (thousandths per litre)."""
        line, pump = self.line, self.pump
        line.wait_status(pump, lambda s: s.state is not PumpState.OFFLINE, self.timeout)
        self.price = signed_price(self.cfg, pump) or NOMINAL_PRICE
        line.set_prices(pump, {NOZZLE: self.price})
        st = line.wait_status(pump, lambda s: s.state is not PumpState.NOT_PROGRAMMED, self.timeout)
        if st.state in (PumpState.AUTHORIZED, PumpState.FILLING):
            raise PumpStateError("the pump is busy with a filling: is the terminal still running?", pump=pump)
        return self.price

    def fill(self, litres: int, *, wait: float, say: Callable[[str], None] = print) -> Fill:
        """Authorize `litres` and wait (at most `wait` seconds) until the filling is over."""
        line, pump = self.line, self.pump
        k = self.k_milli
        line.authorize(pump, nozzles=[NOZZLE], volume_cl=litres * 100)
        say(f"pump {pump} authorized for {litres} L at K {_k(k)}: lift the nozzle and fill the proving "
            "measure; the preset stops the pump")
        deadline = time.monotonic() + wait
        try:
            line.wait_status(pump, lambda s: s.state is PumpState.FILLING or s.state.finished, wait)
            say("filling...")
            st = line.wait_status(pump, lambda s: s.state.finished,
                                  max(0.1, deadline - time.monotonic()))
        except BaseException:          # no answer in time, Ctrl-C: the pump must not stay released
            try:
                line.stop(pump)
            except ForecourtError as exc:
                log.warning("stopping the pump after the calibration failed", extra={"error": str(exc)})
            raise
        count = line.meter(pump).get("count")
        if not isinstance(count, int):
            raise PumpError("the pump unit did not report its pulse count", pump=pump)
        reached = st.state is PumpState.MAX_REACHED
        try:
            line.reset(pump)         # the pump idle again: the terminal finds no filling to settle
        except PumpError as exc:
            log.warning("pump reset after the calibration filling failed", extra={"error": str(exc)})
        say(f"filling over: {count} pulses, {st.volume_cl / 100:.2f} L at the old K"
            + ("" if reached else " (ended before the preset)"))
        return Fill(pump, count, st.volume_cl, k, reached)

    def close(self) -> None:
        for part in (self.pumps, self.gpio):
            if part is not None:
                try:
                    part.close()
                except (ForecourtError, OSError) as exc:
                    log.warning("closing after the calibration failed", extra={"error": str(exc)})
        self.pumps = self.gpio = self.line = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
