"""One simulated Wayne DART pump: state machine, flow, totals, pump-side line protocol and fault injection.

The driver ships it as its simulated backend, as gpiozero ships its mock pin factory. The pump answers
frames handed to it by drivers.pump.sim_line.DartLineSimulator (or directly, in tests) and enforces the
ordering real pumps do (Wayne DART application protocol spec): not programmed until prices are sent; RESET
only from filling completed / max reached (harmless in reset, also leaves switched off); AUTHORIZE only
from reset; RESET clears presets and allowed nozzles.

Money: amount_cents = (volume_cl * price_milli + 500) // 1000, i.e. volume_cl/100 L * price_milli/1000 per
litre in currency units, times 100 for cents, rounded half up. An amount preset stops the flow at the
largest volume whose amount does not exceed the preset (so the amount may end a cent below it).
Flow is computed from elapsed time, so a volume preset is reached exactly, never overshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts.pump import PumpState

from . import dart

__all__ = ["STATE_CODES", "SimFaults", "SimPump", "amount_for"]

STATE_CODES = {
    PumpState.NOT_PROGRAMMED: dart.ST_NOT_PROGRAMMED, PumpState.RESET: dart.ST_RESET,
    PumpState.AUTHORIZED: dart.ST_AUTHORIZED, PumpState.FILLING: dart.ST_FILLING,
    PumpState.FILLING_COMPLETED: dart.ST_FILLING_COMPLETED, PumpState.MAX_REACHED: dart.ST_MAX_REACHED,
    PumpState.SWITCHED_OFF: dart.ST_SWITCHED_OFF,
}
_RESETTABLE = (PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED, PumpState.RESET, PumpState.SWITCHED_OFF)
_PRICEABLE = (PumpState.NOT_PROGRAMMED, PumpState.RESET, PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED,
              PumpState.SWITCHED_OFF)


def amount_for(volume_cl: int, price_milli: int) -> int:
    """Cents for a volume at a unit price, rounded half up."""
    return (volume_cl * price_milli + 500) // 1000


@dataclass
class SimFaults:
    """Fault injection; counters count down as they fire. Set attributes at any time (under pump.lock)."""

    corrupt_crc: int = 0               # the next N data-frame replies fail their CRC check
    drop_bytes: int = 0                # drop this many bytes from the middle of the next reply
    mute: int = 0                      # stay silent for the next N frames addressed to this pump
    nak: int = 0                       # NAK the next N data frames from the master
    hang_up_at_cl: int | None = None   # the customer hangs up when the filling reaches this volume
    flow_stop_at_cl: int | None = None  # flow stops here (nozzle stays out, state stays filling)


class SimPump:
    """A DART pump. Methods are thread-safe; the line thread calls handle() for each frame."""

    def __init__(self, number: int, nozzles: Mapping[int, tuple[str, int]] | None = None, *,
                 flow_cl_per_s: float = 50.0, faults: SimFaults | None = None, identity: int = 1234567890,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.number = number
        self.address = dart.pump_address(number)
        cfg = nozzles if nozzles is not None else {1: ("diesel", 1659), 2: ("petrol95", 1789)}
        self.grades = {n: g for n, (g, _) in cfg.items()}
        self.prices = {n: p for n, (_, p) in cfg.items()}
        self.flow_cl_per_s = flow_cl_per_s
        self.faults = faults if faults is not None else SimFaults()
        self.identity = identity
        self._clock = clock
        self.lock = threading.RLock()
        self.state = PumpState.NOT_PROGRAMMED
        self.nozzle = 0
        self.nozzle_out = False
        self.volume_cl = 0
        self.amount_cents = 0
        self.totals: dict[int, tuple[int, int]] = {n: (0, 0) for n in cfg}   # committed fillings
        self.preset_volume_cl: int | None = None
        self.preset_amount_cents: int | None = None
        self.allowed: set[int] = set()
        self.suspended = False
        self.received: list[tuple[int, bytes]] = []   # every transaction accepted from the master
        self._flow = 0.0            # exact volume of the filling, cl
        self._target = 0.0          # volume the customer wants to have, cl
        self._flow_stopped = False
        self._last_t = clock()
        self._committed = True
        self._reset_line()

    # -- line state --------------------------------------------------------------------------------
    def _reset_line(self) -> None:
        self.tx = 0                  # TX# of our next data frame
        self.rx_last = -1
        self._outstanding: tuple[int, list[tuple[int, bytes]]] | None = None
        self._last_sent_tx = 0
        self._naks = 0
        self._dirty = {dart.DC1}
        self._pending_totals: list[int] = []
        self._send_identity = False

    # -- customer side -----------------------------------------------------------------------------
    def lift(self, nozzle: int) -> None:
        with self.lock:
            if nozzle not in self.prices:
                raise ValueError(f"no such nozzle: {nozzle}")
            self._advance()
            self.nozzle, self.nozzle_out = nozzle, True
            self._dirty.add(dart.DC3)
            if self.state == PumpState.AUTHORIZED and self._nozzle_allowed(nozzle):
                self._start_filling()

    def hang_up(self) -> None:
        with self.lock:
            self._advance()
            self._hang_up()

    def dispense(self, volume_cl: int, *, wait: bool = True, timeout: float = 30.0) -> int:
        """Squeeze the trigger for volume_cl more; with wait, block until the flow stops (requested volume,
        preset, hang-up or fault) and return the volume dispensed by this call."""
        with self.lock:
            self._advance()
            start = self._flow
            self._target = max(self._target, self._flow) + volume_cl
        if not wait:
            return 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                self._advance()
                if not self._flowing():
                    return int(self._flow - start)
            time.sleep(0.002)
        raise TimeoutError(f"dispense did not finish in {timeout:.1f} s")

    def restart(self) -> None:
        """Power cycle: TX# back to 0, state not programmed, current filling ends; totals are kept."""
        with self.lock:
            self._advance()
            self._commit()
            self._reset_line()
            self.state = PumpState.NOT_PROGRAMMED
            self.preset_volume_cl = self.preset_amount_cents = None
            self.allowed = set()
            self.suspended = False
            self._target = self._flow

    def command(self, trans: int, data: bytes) -> None:
        """Apply one master transaction directly, bypassing the line (for scenarios and tests)."""
        with self.lock:
            self._advance()
            self._apply(trans, data)

    def total(self, nozzle: int) -> tuple[int, int]:
        """Electronic totals (volume_cl, amount_cents) of a nozzle, the running filling included."""
        with self.lock:
            self._advance()
            vol, amt = self.totals.get(nozzle, (0, 0))
            if not self._committed and nozzle == self.nozzle:
                vol, amt = vol + self.volume_cl, amt + self.amount_cents
            return vol, amt

    # -- flow model --------------------------------------------------------------------------------
    def _nozzle_allowed(self, nozzle: int) -> bool:
        return not self.allowed or nozzle in self.allowed

    def _start_filling(self) -> None:
        self.state = PumpState.FILLING
        self._flow = 0.0
        self._target = 0.0
        self._flow_stopped = False
        self.volume_cl = self.amount_cents = 0
        self._committed = False
        self._dirty.update((dart.DC1, dart.DC2))

    def _amount_cap(self) -> int | None:
        """Largest volume whose amount does not exceed the amount preset."""
        price = self.prices.get(self.nozzle, 0)
        if self.preset_amount_cents is None or price <= 0:
            return None
        return ((self.preset_amount_cents + 1) * 1000 - 501) // price

    def _cap(self) -> float:
        caps = [self._target]
        if self.preset_volume_cl is not None:
            caps.append(self.preset_volume_cl)
        amount_cap = self._amount_cap()
        if amount_cap is not None:
            caps.append(amount_cap)
        for fault in (self.faults.hang_up_at_cl, self.faults.flow_stop_at_cl):
            if fault is not None:
                caps.append(fault)
        return max(0.0, min(caps))

    def _flowing(self) -> bool:
        return (self.state == PumpState.FILLING and self.nozzle_out and not self.suspended
                and not self._flow_stopped and self._flow < self._cap())

    def _advance(self) -> None:
        now = self._clock()
        dt, self._last_t = now - self._last_t, now
        if not self._flowing():
            return
        self._flow = min(self._cap(), self._flow + self.flow_cl_per_s * dt)
        vol = int(self._flow)
        if vol != self.volume_cl:
            self.volume_cl = vol
            self.amount_cents = amount_for(vol, self.prices.get(self.nozzle, 0))
            self._dirty.add(dart.DC2)
        if self._flow < self._cap():
            return
        amount_cap = self._amount_cap()
        preset_reached = ((self.preset_volume_cl is not None and vol >= self.preset_volume_cl)
                          or (amount_cap is not None and vol >= amount_cap))
        if self.faults.hang_up_at_cl is not None and vol >= self.faults.hang_up_at_cl:
            self.faults.hang_up_at_cl = None
            self._hang_up()
        elif preset_reached:
            self._finish(PumpState.MAX_REACHED)
        elif self.faults.flow_stop_at_cl is not None and vol >= self.faults.flow_stop_at_cl:
            self.faults.flow_stop_at_cl = None
            self._flow_stopped = True

    def _hang_up(self) -> None:
        if self.nozzle_out:
            self.nozzle_out = False
            self._dirty.add(dart.DC3)
        if self.state == PumpState.FILLING:
            self._finish(PumpState.FILLING_COMPLETED)

    def _finish(self, state: PumpState) -> None:
        self.state = state
        self._commit()
        self._dirty.update((dart.DC1, dart.DC2))

    def _commit(self) -> None:
        if not self._committed:
            vol, amt = self.totals.get(self.nozzle, (0, 0))
            self.totals[self.nozzle] = (vol + self.volume_cl, amt + self.amount_cents)
            self._committed = True

    # -- commands from the master ------------------------------------------------------------------
    def _apply(self, trans: int, data: bytes) -> None:
        if trans == dart.CD1 and len(data) == 1:
            self._command(data[0])
        elif trans == dart.CD2:
            self.allowed = set(data)
        elif trans == dart.CD3 and len(data) == 4:
            self.preset_volume_cl = dart.bcd_decode(data)
        elif trans == dart.CD4 and len(data) == 4:
            self.preset_amount_cents = dart.bcd_decode(data)
        elif trans == dart.CD5 and data and len(data) % 3 == 0:
            if self.state in _PRICEABLE:
                for i in range(len(data) // 3):
                    self.prices[i + 1] = dart.bcd_decode(data[3 * i:3 * i + 3])
                if self.state == PumpState.NOT_PROGRAMMED:
                    self.state = PumpState.RESET
                self._dirty.update((dart.DC1, dart.DC3))
        elif trans == dart.CD101 and len(data) == 1:
            self._pending_totals.append(data[0])

    def _command(self, cmd: int) -> None:
        st = self.state
        if cmd == dart.CMD_STATUS:
            self._dirty.update((dart.DC1, dart.DC3))
        elif cmd == dart.CMD_FILLING_INFO:
            self._dirty.add(dart.DC2)
        elif cmd == dart.CMD_IDENTITY:
            self._send_identity = True
        elif cmd == dart.CMD_RESET and st in _RESETTABLE:
            self.state = PumpState.RESET
            self.preset_volume_cl = self.preset_amount_cents = None
            self.allowed = set()
            self.suspended = False
            self.volume_cl = self.amount_cents = 0
            self._flow = self._target = 0.0
            self._dirty.update((dart.DC1, dart.DC2))
        elif cmd == dart.CMD_AUTHORIZE and st == PumpState.RESET:
            self.state = PumpState.AUTHORIZED
            self._dirty.add(dart.DC1)
            if self.nozzle_out and self._nozzle_allowed(self.nozzle):
                self._start_filling()
        elif cmd == dart.CMD_STOP and st in (PumpState.AUTHORIZED, PumpState.FILLING):
            self._finish(PumpState.FILLING_COMPLETED)
        elif cmd == dart.CMD_SWITCH_OFF:
            self._commit()
            self.state = PumpState.SWITCHED_OFF
            self._dirty.add(dart.DC1)
        elif cmd == dart.CMD_SUSPEND and st == PumpState.FILLING:
            self.suspended = True
        elif cmd == dart.CMD_RESUME:
            self.suspended = False
        # anything else (refused by the ordering rules, or unknown) is ignored, as a real pump does

    # -- pump side of the line protocol ------------------------------------------------------------
    def _reply_transactions(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        if dart.DC1 in self._dirty:
            out.append((dart.DC1, bytes((STATE_CODES[self.state],))))
        if dart.DC2 in self._dirty:
            out.append((dart.DC2, dart.bcd_encode(self.volume_cl, 4) + dart.bcd_encode(self.amount_cents, 4)))
        if dart.DC3 in self._dirty:
            nozzle = self.nozzle | (dart.NOZZLE_OUT if self.nozzle_out else 0)
            price = self.prices.get(self.nozzle, 0)
            out.append((dart.DC3, dart.bcd_encode(price, 3) + bytes((nozzle,))))
        for n in self._pending_totals:
            if n in self.prices:
                vol, amt = self.total(n)
                out.append((dart.DC101, bytes((n,)) + dart.bcd_encode(vol, 5) + dart.bcd_encode(amt, 5)))
        if self._send_identity:
            out.append((dart.DC9, dart.bcd_encode(self.identity, 5)))
        self._dirty.clear()
        self._pending_totals = []
        self._send_identity = False
        return out

    def _data_reply(self) -> bytes:
        if self._outstanding is None:
            return dart.encode_short(self.address, dart.EOT, self._last_sent_tx)
        txn, trans = self._outstanding
        raw = bytearray(dart.encode_data(self.address, txn, trans))
        if self.faults.corrupt_crc > 0:
            self.faults.corrupt_crc -= 1
            raw[2] ^= 0x40   # first TRANS byte; never becomes 0xFA or 0x10, so the CRC no longer matches
        return bytes(raw)

    def handle(self, frame: dart.Frame) -> bytes | None:
        """Answer one frame addressed to this pump; None means stay silent."""
        with self.lock:
            if self.faults.mute > 0:
                self.faults.mute -= 1
                return None
            self._advance()
            reply = self._handle(frame)
            if reply is not None and self.faults.drop_bytes > 0:
                n, self.faults.drop_bytes = self.faults.drop_bytes, 0
                reply = reply[:1] + reply[1 + n:]
            return reply

    def _handle(self, frame: dart.Frame) -> bytes | None:
        if frame.kind in (dart.ACK, dart.ACKPOLL) and self._outstanding is not None \
                and frame.txn == self._outstanding[0]:
            self._outstanding = None
            self._naks = 0
        if frame.kind == dart.NAK and self._outstanding is not None:
            self._naks += 1
            if self._naks >= 3:     # sender resets after 3 NAKs
                self._outstanding = (0, self._outstanding[1])
                self.tx = 1
                self._naks = 0
        if frame.kind in (dart.POLL, dart.ACKPOLL):
            if self._outstanding is None:
                trans = self._reply_transactions()
                if trans:
                    self._outstanding = (self.tx, trans)
                    self._last_sent_tx = self.tx
                    self.tx = dart.next_txn(self.tx)
            return self._data_reply()
        if frame.kind == dart.DATA:
            if self.faults.nak > 0:
                self.faults.nak -= 1
                return dart.encode_short(self.address, dart.NAK, frame.txn)
            verdict = dart.rx_verdict(self.rx_last, frame.txn)
            if verdict == dart.RX_REJECT:
                return dart.encode_short(self.address, dart.NAK, frame.txn)
            if verdict == dart.RX_ACCEPT:
                self.rx_last = frame.txn
                for code, data in frame.transactions:
                    try:
                        self._apply(code, data)
                    except dart.DartError:
                        continue    # malformed field: ignored, like a real pump
                    self.received.append((code, data))
            return dart.encode_short(self.address, dart.ACK, frame.txn)
        return None
