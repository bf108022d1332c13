"""One simulated Wayne DART pump: state machine, flow, totals, pump-side line protocol and fault injection.

The driver ships it as its simulated backend, as gpiozero ships its mock pin factory. The pump answers
frames handed to it by drivers.pump.sim_line.DartLineSimulator (or directly, in tests). Every change of
its state is a row of drivers.pump.states.TABLE (cited clause by clause); anything else is refused.
RESET clears the presets and keeps the allowed nozzles. A frame's transactions apply all or none.
Figures go on the wire in the pump's own decimals (`decimals`: DPVOL, DPAMO, DPUNP; answered in DC7).

Money: amount_cents = (volume_cl * price_milli + 500) // 1000, rounded half up. An amount preset stops
the flow at the largest volume whose amount does not exceed it; flow is computed from elapsed time, so a
volume preset is reached exactly, never overshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts.pump import PumpState

from . import commands, dart, layouts
from .replies import OURS, STATES, Decimals, scale
from .states import next_state

__all__ = ["SimFaults", "SimPump", "amount_for"]

_COMMANDS = {dart.CMD_RESET: "reset", dart.CMD_AUTHORIZE: "authorize", dart.CMD_STOP: "stop",
             dart.CMD_SWITCH_OFF: "switch_off", dart.CMD_SUSPEND: "suspend", dart.CMD_RESUME: "resume"}


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
    bad_amount_at_cl: int | None = None  # the first DC2 of this volume has a non-BCD amount (good CRC)


class SimPump:
    """A DART pump. Methods are thread-safe; the line thread calls handle() for each frame."""

    def __init__(self, number: int, nozzles: Mapping[int, tuple[str, int]] | None = None, *,
                 flow_cl_per_s: float = 50.0, faults: SimFaults | None = None, identity: int = 1234567890,
                 decimals: tuple[int, int, int] = (2, 2, 3),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.number = number
        self.address = dart.pump_address(number)
        cfg = nozzles if nozzles is not None else {1: ("diesel", 1659), 2: ("petrol95", 1789)}
        self.grades = {n: g for n, (g, _) in cfg.items()}
        self.prices = {n: p for n, (_, p) in cfg.items()}
        self.flow_cl_per_s = flow_cl_per_s
        self.faults = faults if faults is not None else SimFaults()
        self.identity = identity
        self.decimals = Decimals(*decimals)
        self._clock = clock
        self.lock = threading.RLock()
        self.code = dart.ST_NOT_PROGRAMMED          # DC1 status: the state the table moves
        self.nozzle, self.nozzle_out = 0, False
        self.volume_cl = self.amount_cents = 0
        self.totals: dict[int, tuple[int, int]] = {n: (0, 0) for n in cfg}   # committed fillings
        self.preset_volume_cl: int | None = None
        self.preset_amount_cents: int | None = self.preset_volume_cl
        self.allowed: set[int] = set()
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
        self._last_sent_tx = self._naks = 0
        self._dirty = {dart.DC1}
        self._pending_totals: list[int] = []
        self._send_identity = self._send_parameters = False

    @property
    def state(self) -> PumpState:
        """The state as contracts.pump names it (SUSPENDED reads as FILLING: the filling is still open)."""
        return STATES[self.code]

    @property
    def suspended(self) -> bool:
        return self.code == dart.ST_SUSPENDED

    def _event(self, event: str) -> bool:
        """Move by the state table; False (and no change) when the table has no row for it."""
        new = next_state(self.code, event)
        if new is None:
            return False
        if new != self.code:
            self.code = new
            self._dirty.add(dart.DC1)
        return True

    # -- customer side -----------------------------------------------------------------------------
    def lift(self, nozzle: int) -> None:
        with self.lock:
            if nozzle not in self.prices:
                raise ValueError(f"no such nozzle: {nozzle}")
            self._advance()
            self.nozzle, self.nozzle_out = nozzle, True
            self._dirty.add(dart.DC3)
            if self.code == dart.ST_AUTHORIZED and self._nozzle_allowed(nozzle):
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
            self.code = dart.ST_NOT_PROGRAMMED      # a power cycle is no event of the table
            self.preset_volume_cl = self.preset_amount_cents = None
            self.allowed = set()
            self._target = self._flow

    def command(self, trans: int, data: bytes) -> None:
        """Apply one master transaction directly, bypassing the line (for scenarios and tests)."""
        with self.lock:
            self._advance()
            commands.check(trans, data)
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
        if not self._event("flow"):
            return
        self._flow = 0.0
        self._target = 0.0
        self._flow_stopped = False
        self.volume_cl = self.amount_cents = 0
        self._committed = False
        self._dirty.add(dart.DC2)

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
        return (self.code == dart.ST_FILLING and self.nozzle_out and not self._flow_stopped
                and self._flow < self._cap())

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
            self._finish("max")
        elif self.faults.flow_stop_at_cl is not None and vol >= self.faults.flow_stop_at_cl:
            self.faults.flow_stop_at_cl = None
            self._flow_stopped = True

    def _hang_up(self) -> None:
        if self.nozzle_out:
            self.nozzle_out = False
            self._dirty.add(dart.DC3)
            self._finish("nozzle_in")

    def _finish(self, event: str) -> None:
        if self._event(event) and self.state.finished:
            self._commit()
            self._dirty.add(dart.DC2)

    def _commit(self) -> None:
        if not self._committed:
            vol, amt = self.totals.get(self.nozzle, (0, 0))
            self.totals[self.nozzle] = (vol + self.volume_cl, amt + self.amount_cents)
            self._committed = True

    # -- commands from the master ------------------------------------------------------------------
    def _apply(self, trans: int, data: bytes) -> None:
        dec = self.decimals
        if trans == dart.CD1:
            self._command(data[0])
        elif trans == dart.CD2:
            self.allowed = set(data)
        elif trans == dart.CD3:
            self.preset_volume_cl = scale(dart.bcd_decode(data), dec.volume, OURS.volume)
        elif trans == dart.CD4:
            self.preset_amount_cents = scale(dart.bcd_decode(data), dec.amount, OURS.amount)
        elif trans == dart.CD5 and next_state(self.code, "prices") is not None:
            for i in range(len(data) // 3):
                self.prices[i + 1] = scale(dart.bcd_decode(data[3 * i:3 * i + 3]), dec.price, OURS.price)
            self._event("prices")
            self._dirty.update((dart.DC1, dart.DC3))
        elif trans == dart.CD101:
            self._pending_totals.append(data[0])

    def _command(self, cmd: int) -> None:
        if cmd == dart.CMD_STATUS:
            self._dirty.update((dart.DC1, dart.DC3))
        elif cmd == dart.CMD_FILLING_INFO:            # answered by DC2 and DC3 (issue 11, real pumps)
            self._dirty.update((dart.DC2, dart.DC3))
        elif cmd == dart.CMD_PARAMETERS:
            self._send_parameters = True
        elif cmd == dart.CMD_IDENTITY:
            self._send_identity = True
        elif cmd == dart.CMD_RESET:
            if self._event("reset"):                  # presets go, the allowed nozzles stay
                self.preset_volume_cl = self.preset_amount_cents = None
                self.volume_cl = self.amount_cents = 0
                self._flow = self._target = 0.0
                self._dirty.update((dart.DC1, dart.DC2))
        elif cmd == dart.CMD_AUTHORIZE:
            if self._event("authorize") and self.nozzle_out and self._nozzle_allowed(self.nozzle):
                self._start_filling()
        elif cmd in (dart.CMD_STOP, dart.CMD_SWITCH_OFF):
            self._commit()
            self._finish(_COMMANDS[cmd])
        elif cmd in _COMMANDS:
            self._event(_COMMANDS[cmd])
        # anything else (refused by the state table, or unknown) is ignored, as a real pump does

    # -- pump side of the line protocol ------------------------------------------------------------
    def _reply_transactions(self) -> list[tuple[int, bytes]]:
        dec, out = self.decimals, []
        if dart.DC1 in self._dirty:
            out.append((dart.DC1, bytes((self.code,))))
        if dart.DC2 in self._dirty:
            amount = dart.bcd_encode(scale(self.amount_cents, OURS.amount, dec.amount), 4)
            if self.faults.bad_amount_at_cl == self.volume_cl:
                self.faults.bad_amount_at_cl = None
                amount = b"\xff" * 4
            volume = dart.bcd_encode(scale(self.volume_cl, OURS.volume, dec.volume), 4)
            out.append((dart.DC2, volume + amount))
        if dart.DC3 in self._dirty:
            nozzle = self.nozzle | (dart.NOZZLE_OUT if self.nozzle_out else 0)
            price = scale(self.prices.get(self.nozzle, 0), OURS.price, dec.price)
            out.append((dart.DC3, dart.bcd_encode(price, 3) + bytes((nozzle,))))
        if self._send_parameters:
            out.append((dart.DC7, layouts.encode_dc7(dec.volume, dec.amount, dec.price)))
        for coun in self._pending_totals:
            out.append((dart.DC101, layouts.encode_dc101(coun, self._counter(coun))))
        if self._send_identity:
            out.append((dart.DC9, dart.bcd_encode(self.identity, 5)))
        self._dirty.clear()
        self._pending_totals = []
        self._send_identity = self._send_parameters = False
        return out

    def _counter(self, coun: int) -> int:
        """A total counter in the pump's decimals: a nozzle's or the sum, volume (COUN 01..09) or amount."""
        volume = layouts.coun_is_volume(coun)
        nozzles = list(self.prices) if coun & 0x0F == 9 else [coun & 0x0F]
        total = sum(self.total(n)[0 if volume else 1] for n in nozzles if n in self.prices)
        dec = self.decimals
        return scale(total, OURS.volume, dec.volume) if volume else scale(total, OURS.amount, dec.amount)

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
                try:                # all or none: one malformed field and the frame is ignored
                    for code, data in frame.transactions:
                        commands.check(code, data)
                except dart.DartError:
                    return dart.encode_short(self.address, dart.ACK, frame.txn)
                for code, data in frame.transactions:
                    self._apply(code, data)
                    self.received.append((code, data))
            return dart.encode_short(self.address, dart.ACK, frame.txn)
        return None
