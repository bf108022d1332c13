"""PulserController: the pump interface (contracts.pump.PumpController) over pulser dispensers, each one a
pump node on a UART (link.NodeLink) or a PulserCore on the terminal's own GPIO (gpio_line.LocalUnit).

One thread polls every unit's status; commands go straight to the unit (each unit serializes its own
requests). A node that restarted is seen by its boot number and is given its calibration again. Prices
are kept here and sent with each authorization: a pulser dispenser has one nozzle, number 1.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, Self

from contracts.errors import MessageError, PumpError, PumpLinkError, PumpStateError, PumpTimeout
from contracts.pump import PumpState, PumpStatus, PumpTotals
from drivers.pump.statuswait import wait_in_table

from . import meter, wire
from .node import decode_status, decode_totals

__all__ = ["NOZZLE", "PulserController", "Unit"]

log = logging.getLogger(__name__)

NOZZLE = 1
RESTART_EVENT_EVERY = 60.0     # seconds: a pump node's restarts are reported at most this often
OVERRUN_CL = 200               # beyond the preset, what a closing valve may still let through
_STATES = {meter.IDLE: PumpState.RESET, meter.AUTHORIZED: PumpState.AUTHORIZED,
           meter.FILLING: PumpState.FILLING, meter.COMPLETED: PumpState.FILLING_COMPLETED,
           meter.MAX_REACHED: PumpState.MAX_REACHED}


class Unit(Protocol):
    def request(self, kind: int, payload: bytes = b"") -> bytes: ...

    def close(self) -> None: ...


class PulserController:
    """k_milli: each pump's K-factor (pulses per 1000 L); slow_cl: the preset's slow-stage volume."""

    def __init__(self, units: Mapping[int, Unit], *, k_milli: Mapping[int, int], slow_cl: int = 50,
                 poll_interval: float = 0.05, offline_time: float = 1.0, command_timeout: float = 2.0,
                 on_close: Callable[[], None] | None = None,
                 event: Callable[[str, str, str], None] | None = None) -> None:
        self.units = dict(units)
        self.k_milli, self.slow_cl = dict(k_milli), slow_cl
        self.poll_interval, self.offline_time = poll_interval, offline_time
        self.command_timeout = command_timeout
        self._on_close = on_close
        self._event = event                  # (severity, code, detail) to the registry: a node restarted
        self._restarts: dict[int, int] = {}          # restarts not reported yet
        self._restart_told: dict[int, float] = {}    # when a restart was last reported
        self._cond = threading.Condition()
        self._status = {n: PumpStatus(pump=n, state=PumpState.OFFLINE) for n in self.units}
        self._prices: dict[int, int] = {}
        self._boot: dict[int, int] = {}
        self._fields: dict[int, dict[str, int]] = {}      # each pump's last status from its unit, raw
        self._granted: dict[int, tuple[int, int, int]] = {}   # pump -> (filling number, price, cap cl)
        self._totals: dict[int, tuple[int, int]] = {}         # pump -> the last totals read
        self._configured: set[int] = set()
        self._heard = {n: 0.0 for n in self.units}
        self._locks = {n: threading.Lock() for n in self.units}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.turns = 0                         # polling rounds so far

    # -- life cycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pulser-poll", daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        """The polling thread (watched by the terminal's liveness check)."""
        return self._thread

    def close(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=5)
        for unit in self.units.values():
            unit.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- status ------------------------------------------------------------------------------------------
    def _check(self, pump: int) -> Unit:
        unit = self.units.get(pump)
        if unit is None:
            raise PumpError("pump not configured on this line", pump=pump)
        return unit

    def status(self, pump: int) -> PumpStatus:
        self._check(pump)
        with self._cond:
            return self._status[pump]

    def wait_status(self, pump: int, predicate: Callable[[PumpStatus], bool], timeout: float) -> PumpStatus:
        self._check(pump)
        return wait_in_table(self._cond, self._status, pump, predicate, timeout)

    def _plausible(self, pump: int, fields: dict[str, int]) -> None:
        """A status a pump node could not truthfully send is refused (MessageError): its amount is not its
        volume at its price; for the filling this controller authorized, another price, a volume that went
        down with no restart between, or one past the preset by more than a closing valve lets through."""
        if fields["amount_cents"] != meter.amount_for(fields["volume_cl"], fields["price"]):
            raise MessageError("pump node status: amount is not volume x price", pump=pump)
        granted = self._granted.get(pump)
        if granted is None or fields["number"] != granted[0]:
            return
        number, price, cap_cl = granted
        last = self._fields.get(pump, {})
        if fields["price"] != price:
            raise MessageError("pump node status: not the price authorized", pump=pump)
        # a restart may lose what the node never saved: only within one run may the volume not go down
        same_run = last.get("number") == number and last.get("boot") == fields["boot"]
        if same_run and fields["volume_cl"] < last.get("volume_cl", 0):
            raise MessageError("pump node status: the filling's volume went down", pump=pump)
        if cap_cl and fields["volume_cl"] > cap_cl + OVERRUN_CL:
            raise MessageError("pump node status: volume far past the preset", pump=pump,
                               volume_cl=fields["volume_cl"], preset_cl=cap_cl)

    def _publish(self, pump: int, body: bytes) -> None:
        fields = decode_status(body)
        self._plausible(pump, fields)
        self._fields[pump] = fields
        boot = fields["boot"]
        if self._boot.get(pump, boot) != boot:
            log.warning("pump node restarted", extra={"pump": pump, "boot": boot})
            self._configured.discard(pump)
            self._report_restart(pump, boot)
        if fields["flags"] & 16:               # it lost its K-factor (wiped, replaced): give it again
            self._configured.discard(pump)
        self._boot[pump] = boot
        self._heard[pump] = time.monotonic()
        state = _STATES.get(fields["state"])
        if state is None:
            raise MessageError("pump node reports an unknown state", pump=pump, state=fields["state"])
        nozzle_out = bool(fields["flags"] & 1)
        if state is PumpState.RESET and (NOZZLE not in self._prices or fields["flags"] & 16
                                         or pump not in self._configured):
            state = PumpState.NOT_PROGRAMMED
        in_use = nozzle_out or state is PumpState.FILLING or state.finished
        price = fields["price"] if state is not PumpState.RESET else self._prices.get(NOZZLE, 0)
        with self._cond:
            old = self._status[pump]
            new = PumpStatus(pump=pump, state=state, nozzle=NOZZLE if in_use else 0, nozzle_out=nozzle_out,
                             volume_cl=fields["volume_cl"], amount_cents=fields["amount_cents"],
                             price_milli=price, seq=old.seq)
            if new != old:
                self._status[pump] = dataclasses.replace(new, seq=old.seq + 1)
                self._cond.notify_all()

    def _report_restart(self, pump: int, boot: int) -> None:
        """One event per restart, at most one a minute per pump: a node that restarts in a loop (or lies
        about it) cannot flood the registry or the terminal's event outbox."""
        self._restarts[pump] = self._restarts.get(pump, 0) + 1
        now = time.monotonic()
        last = self._restart_told.get(pump)
        if self._event is None or last is not None and now - last < RESTART_EVENT_EVERY:
            return
        count, self._restarts[pump] = self._restarts[pump], 0
        self._restart_told[pump] = now
        self._event("warning", "pump_node_restarted",
                    f"pump {pump}: its pump node restarted (boot {boot}, {count} restart(s) since the last "
                    "report); a filling it was running ended with the pulses it had saved")

    def _set_offline(self, pump: int) -> None:
        with self._cond:
            old = self._status[pump]
            if old.state is not PumpState.OFFLINE:
                log.error("pump offline", extra={"pump": pump})
                self._status[pump] = PumpStatus(pump=pump, state=PumpState.OFFLINE, seq=old.seq + 1)
                self._cond.notify_all()

    def meter(self, pump: int) -> dict[str, int]:
        """The unit's last status as it sent it: boot, state, flags, filling number, the filling's pulse
        count, volume, amount, price, stray pulses (a technician's calibration reads the count)."""
        self._check(pump)
        with self._cond:
            return dict(self._fields.get(pump, {}))

    # -- one exchange ------------------------------------------------------------------------------------
    def _exchange(self, pump: int, kind: int, payload: bytes = b"", *, command: bool = True) -> bytes:
        """One request to the pump's unit, its status applied, under the pump's own lock: a poll and a
        command never overtake each other. A command the unit never answered leaves the pump OFFLINE at
        once (it may have acted: the sale must not take it for released or not); a status that does not
        decode is a PumpLinkError."""
        unit = self._check(pump)
        with self._locks[pump]:
            try:
                body = unit.request(kind, payload)
                if kind != wire.TOTALS:
                    self._publish(pump, body)
            except (PumpTimeout, PumpLinkError):
                if command:
                    self._set_offline(pump)
                raise
            except MessageError as exc:
                raise PumpLinkError("pump node sent a bad status", pump=pump, error=str(exc)) from exc
        return body

    # -- polling -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.turns += 1                    # the watchdog's sign that the line makes progress
            for pump in self.units:
                try:
                    self._configure(pump)
                    self._exchange(pump, wire.STATUS, command=False)
                except PumpError as exc:
                    if time.monotonic() - self._heard[pump] >= self.offline_time:
                        self._set_offline(pump)
                    log.debug("pump node poll failed", extra={"pump": pump, "error": str(exc)})
            self._stop.wait(self.poll_interval)

    def _configure(self, pump: int) -> None:
        """Give the unit its K-factor once, and again after it restarted (refused while it fills)."""
        if pump in self._configured:
            return
        payload = wire.put_u(self.k_milli[pump], 4) + wire.put_u(self.slow_cl, 2)
        try:
            self._exchange(pump, wire.CONFIG, payload, command=False)
        except PumpStateError as exc:
            if exc.context.get("code") == wire.NAK_VALUE:
                log.error("pump node refuses its K-factor or slow volume", extra={"pump": pump})
            return                     # a filling runs: try again when it is over
        self._configured.add(pump)

    # -- commands ----------------------------------------------------------------------------------------
    def _command(self, pump: int, kind: int, payload: bytes = b"") -> PumpStatus:
        self._exchange(pump, kind, payload)
        return self.status(pump)

    def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        self._check(pump)
        if set(prices) - {NOZZLE} or not all(0 < p < 10**8 for p in prices.values()):
            raise PumpStateError("a pulser dispenser has one nozzle (1) and prices 1..99999999", pump=pump)
        self._prices.update(prices)
        self._command(pump, wire.STATUS)

    def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                  amount_cents: int | None = None) -> None:
        self._check(pump)
        if NOZZLE not in nozzles:
            raise PumpStateError("nozzle 1 not allowed for this sale", pump=pump)
        price = self._prices.get(NOZZLE)
        self._configure(pump)                      # a node that restarted since the last poll
        if price is None or pump not in self._configured:
            raise PumpStateError("pump not programmed (no price or calibration yet)", pump=pump)
        st = self.status(pump)
        if st.state is PumpState.OFFLINE:
            raise PumpTimeout("pump offline", pump=pump)
        if st.state.finished:
            self._command(pump, wire.RESET)
        by, value = ((meter.BY_AMOUNT, amount_cents) if amount_cents is not None
                     else (meter.BY_VOLUME, volume_cl))
        if value is not None and not 0 < value < 2**32:
            raise PumpStateError("preset out of range", pump=pump)
        preset = wire.put_u(price, 4) + bytes((by,)) + wire.put_u(value or 0, 4)
        cap_cl = (value or 0) if by == meter.BY_VOLUME else ((value or 0) * 1000 + 500) // price
        self._granted.pop(pump, None)
        st = self._command(pump, wire.AUTHORIZE, preset)
        self._granted[pump] = (self._fields[pump]["number"], price, cap_cl)
        if st.state not in (PumpState.AUTHORIZED, PumpState.FILLING):
            raise PumpStateError("AUTHORIZE refused by pump", pump=pump, state=st.state.value)

    def stop(self, pump: int) -> None:
        """STOP, then wait until the filling is final: the closing valve's late pulses belong to it
        (meter.SETTLE_MS), so the figures a sale settles from right after include them."""
        self._command(pump, wire.STOP)
        try:
            self.wait_status(pump, lambda s: s.state is not PumpState.FILLING, self.command_timeout)
        except PumpTimeout:
            log.warning("pump filling not final after STOP", extra={"pump": pump})

    def suspend(self, pump: int) -> None:
        self._command(pump, wire.SUSPEND)

    def resume(self, pump: int) -> None:
        self._command(pump, wire.RESUME)

    def reset(self, pump: int) -> None:
        self._command(pump, wire.RESET)

    def totals(self, pump: int, nozzle: int) -> PumpTotals:
        self._check(pump)
        if nozzle != NOZZLE:
            raise MessageError("a pulser dispenser keeps totals for nozzle 1 only", pump=pump, nozzle=nozzle)
        body = self._exchange(pump, wire.TOTALS)
        try:
            volume, amount, _ = decode_totals(body)
        except MessageError as exc:
            raise PumpLinkError("pump node sent bad totals", pump=pump, error=str(exc)) from exc
        last = self._totals.get(pump)
        if last is not None and (volume < last[0] or amount < last[1]):
            raise PumpLinkError("pump node totals went backwards", pump=pump)
        self._totals[pump] = (volume, amount)
        return PumpTotals(pump=pump, nozzle=nozzle, volume_cl=volume, amount_cents=amount)
