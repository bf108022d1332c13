"""DartController: contracts.pump.PumpController over one Wayne DART line.

A background thread owns the line: it polls every configured pump round-robin and sends the commands other
threads queue. On start it only polls and asks for status and filling info, so a filling in progress
survives a terminal restart and its final figures can still be read. Its first frame to each pump carries
TX# 0, which tells the pump the master restarted (Wayne DART line protocol spec).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from contracts.errors import ConfigError, MessageError, PumpError, PumpLinkError, PumpStateError, PumpTimeout
from contracts.pump import PumpState, PumpStatus, PumpTotals

from . import dart
from .link import DartLink, SerialLike, Transactions

__all__ = ["STATES", "DartController"]

log = logging.getLogger(__name__)

STATES = {
    dart.ST_NOT_PROGRAMMED: PumpState.NOT_PROGRAMMED, dart.ST_RESET: PumpState.RESET,
    dart.ST_AUTHORIZED: PumpState.AUTHORIZED, dart.ST_FILLING: PumpState.FILLING,
    dart.ST_FILLING_COMPLETED: PumpState.FILLING_COMPLETED, dart.ST_MAX_REACHED: PumpState.MAX_REACHED,
    dart.ST_SWITCHED_OFF: PumpState.SWITCHED_OFF,
}
_BUSY = (PumpState.AUTHORIZED, PumpState.FILLING)
_STARTED = (PumpState.AUTHORIZED, PumpState.FILLING, PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED)


class _Command:
    def __init__(self, pump: int, transactions: Transactions) -> None:
        self.pump = pump
        self.transactions = transactions
        self.done = threading.Event()
        self.cancelled = False
        self.error: PumpError | None = None


class DartController:
    """PumpController for the DART pumps `pumps` (numbers 1..32) on the serial line at `url`.

    reply_timeout: window for a pump's first answer byte; poll_interval: pause after each round of polls;
    command_timeout: how long a caller waits for a command to go out and for the pump to report the
    resulting state; offline_after: missed polls before a pump is OFFLINE. `serial_factory` replaces
    serial.serial_for_url (transport injection for tests and benches).
    """

    def __init__(self, url: str, pumps: Sequence[int], *, baudrate: int = 9600, reply_timeout: float = 0.05,
                 poll_interval: float = 0.02, offline_after: int = 3, command_timeout: float = 2.0,
                 serial_factory: Callable[..., Any] | None = None) -> None:
        if not pumps or any(n < 1 or n > 32 for n in pumps):
            raise ConfigError("pumps must be numbers 1..32", url=url, pumps=list(pumps))
        self.url = url
        self.pumps = tuple(dict.fromkeys(pumps))
        self.baudrate = baudrate
        self.reply_timeout = reply_timeout
        self.poll_interval = poll_interval
        self.offline_after = offline_after
        self.command_timeout = command_timeout
        self._serial_factory = serial_factory
        self._port: SerialLike | None = None
        self._link: DartLink | None = None
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queues: dict[int, deque[_Command]] = {n: deque() for n in self.pumps}
        self._status = {n: PumpStatus(pump=n, state=PumpState.OFFLINE) for n in self.pumps}
        self._totals: dict[tuple[int, int], tuple[int, PumpTotals]] = {}
        self._totals_seq = 0
        self._was_online = {n: False for n in self.pumps}

    # -- lifecycle ---------------------------------------------------------------------------------
    def _open(self) -> SerialLike:
        if self._serial_factory is not None:
            return self._serial_factory(self.url, baudrate=self.baudrate)  # type: ignore[no-any-return]
        try:
            import serial  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - pyserial is a core dependency
            raise PumpLinkError("pyserial is not installed: pip install pyserial") from exc
        try:
            port = serial.serial_for_url(self.url, baudrate=self.baudrate, bytesize=8,
                                         parity=serial.PARITY_ODD, stopbits=1,
                                         timeout=min(self.reply_timeout, 0.01))
        except (OSError, ValueError) as exc:
            raise PumpLinkError("cannot open pump line", url=self.url, error=str(exc)) from exc
        return port  # type: ignore[no-any-return]

    def start(self) -> None:
        """Open the port, flush stale input and start polling. Idempotent."""
        if self._thread is not None:
            return
        port = self._open()
        try:
            port.reset_input_buffer()
        except OSError as exc:
            raise PumpLinkError("cannot flush pump line", url=self.url, error=str(exc)) from exc
        self._port = port
        self._link = DartLink(port, reply_timeout=self.reply_timeout, offline_after=self.offline_after)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dart-poll", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the poll thread and close the port; queued commands fail with PumpLinkError."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5.0)
        for q in self._queues.values():
            while q:
                cmd = q.popleft()
                cmd.error = PumpLinkError("controller closed", pump=cmd.pump)
                cmd.done.set()
        if self._port is not None:
            try:
                self._port.close()  # type: ignore[attr-defined]
            except OSError:
                pass
            self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- status --------------------------------------------------------------------------------------
    def _check(self, pump: int) -> None:
        if pump not in self._status:
            raise PumpError("pump not configured on this line", pump=pump, url=self.url)

    def status(self, pump: int) -> PumpStatus:
        self._check(pump)
        with self._cond:
            return self._status[pump]

    def wait_status(self, pump: int, predicate: Callable[[PumpStatus], bool], timeout: float) -> PumpStatus:
        self._check(pump)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                st = self._status[pump]
                if predicate(st):
                    return st
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PumpTimeout("pump status not reached", pump=pump, state=st.state.value)
                self._cond.wait(left)

    # -- commands ------------------------------------------------------------------------------------
    def _submit(self, pump: int, transactions: Transactions, *, wait: bool = True) -> None:
        self._check(pump)
        if self._thread is None:
            raise PumpLinkError("controller not started", pump=pump)
        cmd = _Command(pump, transactions)
        with self._cond:
            if wait and self._status[pump].state == PumpState.OFFLINE:
                raise PumpTimeout("pump offline", pump=pump)
            self._queues[pump].append(cmd)
        self._wake.set()
        if not wait:
            return
        if not cmd.done.wait(self.command_timeout):
            cmd.cancelled = True
            raise PumpTimeout("command not sent in time", pump=pump)
        if cmd.error is not None:
            raise cmd.error

    def _expect(self, pump: int, seq0: int, states: tuple[PumpState, ...], what: str) -> PumpStatus:
        """Wait for a status newer than seq0 in one of states; PumpStateError if the pump ends elsewhere."""
        try:
            return self.wait_status(pump, lambda s: s.seq > seq0 and s.state in states, self.command_timeout)
        except PumpTimeout:
            st = self.status(pump)
            if st.state == PumpState.OFFLINE:
                raise
            raise PumpStateError(what + " refused by pump", pump=pump, state=st.state.value) from None

    def reset(self, pump: int) -> None:
        """RESET a finished filling (harmless in reset state); PumpStateError while authorized/filling."""
        st = self.status(pump)
        if st.state == PumpState.OFFLINE:
            raise PumpTimeout("pump offline", pump=pump)
        if st.state in _BUSY or st.state == PumpState.NOT_PROGRAMMED:
            raise PumpStateError("RESET not allowed", pump=pump, state=st.state.value)
        self._submit(pump, [(dart.CD1, bytes((dart.CMD_RESET,))), (dart.CD1, bytes((dart.CMD_STATUS,)))])
        self._expect(pump, st.seq, (PumpState.RESET,), "RESET")

    def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                  amount_cents: int | None = None) -> None:
        """RESET if the last filling is finished, then allowed nozzles, preset and AUTHORIZE in one frame."""
        if volume_cl is not None and amount_cents is not None:
            raise MessageError("give a volume or an amount preset, not both", pump=pump)
        if not nozzles or any(n < 1 or n > 15 for n in nozzles):
            raise MessageError("nozzles must be 1..15", pump=pump, nozzles=list(nozzles))
        trans: Transactions = [(dart.CD2, bytes(nozzles))]
        try:
            if volume_cl is not None:
                trans.append((dart.CD3, dart.bcd_encode(volume_cl, 4)))
            if amount_cents is not None:
                trans.append((dart.CD4, dart.bcd_encode(amount_cents, 4)))
        except dart.BcdError as exc:
            raise MessageError("preset out of range", pump=pump) from exc
        trans.append((dart.CD1, bytes((dart.CMD_AUTHORIZE,))))
        st = self.status(pump)
        if st.state.finished:
            self.reset(pump)
            st = self.status(pump)
        if st.state == PumpState.OFFLINE:
            raise PumpTimeout("pump offline", pump=pump)
        if st.state != PumpState.RESET:
            raise PumpStateError("AUTHORIZE needs the reset state", pump=pump, state=st.state.value)
        self._submit(pump, trans)
        self._expect(pump, st.seq, _STARTED, "AUTHORIZE")

    def stop(self, pump: int) -> None:
        """STOP an authorization or a filling; the pump reports the filling completed."""
        st = self.status(pump)
        self._submit(pump, [(dart.CD1, bytes((dart.CMD_STOP,))), (dart.CD1, bytes((dart.CMD_STATUS,)))])
        if st.state in _BUSY:
            self._expect(pump, st.seq, (PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED), "STOP")

    def suspend(self, pump: int) -> None:
        """SUSPEND a filling (CD1 0x0D): the flow pauses, the sale stays open; resume() continues it.

        The pump keeps reporting FILLING while suspended (DC1 has no suspended state), so success means the
        pump ACKed the command; PumpStateError unless the pump is authorized or filling.
        """
        st = self.status(pump)
        if st.state not in _BUSY:
            raise PumpStateError("SUSPEND needs a filling", pump=pump, state=st.state.value)
        self._submit(pump, [(dart.CD1, bytes((dart.CMD_SUSPEND,))), (dart.CD1, bytes((dart.CMD_STATUS,)))])

    def resume(self, pump: int) -> None:
        """RESUME a suspended filling (CD1 0x0E). Harmless when nothing is suspended, so allowed in any
        state but OFFLINE: a terminal that lost track after a restart can always release the pump."""
        self._submit(pump, [(dart.CD1, bytes((dart.CMD_RESUME,))), (dart.CD1, bytes((dart.CMD_STATUS,)))])

    def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        """CD5 price update; prices must cover nozzles 1..n. Programs a pump that is not programmed."""
        if not prices or sorted(prices) != list(range(1, len(prices) + 1)):
            raise MessageError("prices must cover nozzles 1..n", pump=pump, nozzles=sorted(prices))
        try:
            data = b"".join(dart.bcd_encode(prices[n], 3) for n in sorted(prices))
        except dart.BcdError as exc:
            raise MessageError("price out of range", pump=pump) from exc
        st = self.status(pump)
        if st.state in _BUSY:
            raise PumpStateError("prices cannot change during a sale", pump=pump, state=st.state.value)
        self._submit(pump, [(dart.CD5, data), (dart.CD1, bytes((dart.CMD_STATUS,)))])
        if st.state == PumpState.NOT_PROGRAMMED:
            self._expect(pump, st.seq, (PumpState.RESET,), "price update")

    def totals(self, pump: int, nozzle: int) -> PumpTotals:
        """Electronic totals of one nozzle (CD101 -> DC101)."""
        if nozzle < 1 or nozzle > 15:
            raise MessageError("nozzle must be 1..15", pump=pump, nozzle=nozzle)
        with self._cond:
            seq0 = self._totals_seq
        self._submit(pump, [(dart.CD101, bytes((nozzle,)))])
        deadline = time.monotonic() + self.command_timeout
        with self._cond:
            while True:
                got = self._totals.get((pump, nozzle))
                if got is not None and got[0] > seq0:
                    return got[1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PumpTimeout("no totals from pump", pump=pump, nozzle=nozzle)
                self._cond.wait(left)

    # -- poll thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        link = self._link
        if link is None:
            return
        while not self._stop.is_set():
            try:
                for pump in self.pumps:
                    if self._stop.is_set():
                        return
                    self._serve(link, pump)
            except PumpLinkError as exc:
                log.error("dart line failed", extra={"url": self.url, "error": str(exc)})
                self._fail_all(exc)
                self._stop.wait(0.5)
                continue
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _serve(self, link: DartLink, pump: int) -> None:
        queue = self._queues[pump]
        while queue:
            cmd = queue.popleft()
            if cmd.cancelled:
                continue
            try:
                link.send(pump, cmd.transactions)
            except PumpLinkError as exc:
                cmd.error = exc
                cmd.done.set()
                raise
            except PumpError as exc:
                cmd.error = exc
            cmd.done.set()
        try:
            transactions = link.poll(pump)
        except PumpTimeout:
            transactions = None
        online = link.online(pump)
        if online and not self._was_online[pump]:
            # first contact (or back after offline): ask, never command; a running filling is left alone
            queue.append(_Command(pump, [(dart.CD1, bytes((dart.CMD_STATUS,)))]))
            queue.append(_Command(pump, [(dart.CD1, bytes((dart.CMD_FILLING_INFO,)))]))
        self._was_online[pump] = online
        if transactions:
            self._absorb(pump, transactions)
        elif not online:
            self._set_offline(pump)

    def _set_offline(self, pump: int) -> None:
        with self._cond:
            st = self._status[pump]
            if st.state != PumpState.OFFLINE:
                self._status[pump] = replace(st, state=PumpState.OFFLINE, seq=st.seq + 1)
                self._cond.notify_all()

    def _fail_all(self, exc: PumpLinkError) -> None:
        for pump in self.pumps:
            self._was_online[pump] = False
            self._set_offline(pump)
            q = self._queues[pump]
            while q:
                cmd = q.popleft()
                cmd.error = exc
                cmd.done.set()

    def _absorb(self, pump: int, transactions: Transactions) -> None:
        """Fold DC1/DC2/DC3/DC101 into the pump's status;
        unknown or malformed fields are logged and skipped."""
        with self._cond:
            st = self._status[pump]
            fields: dict[str, Any] = {}
            touched = False
            for trans, data in transactions:
                try:
                    touched = self._field(pump, trans, data, fields) or touched
                except dart.DartError as exc:
                    log.warning("dart bad field", extra={"pump": pump, "trans": trans, "error": str(exc)})
            if touched:
                self._status[pump] = replace(st, seq=st.seq + 1, **fields)
            self._cond.notify_all()

    def _field(self, pump: int, trans: int, data: bytes, fields: dict[str, Any]) -> bool:
        if trans == dart.DC1 and len(data) >= 1:
            state = STATES.get(data[0])
            if state is None:
                log.info("dart unknown status", extra={"pump": pump, "code": data[0]})
                return False
            fields["state"] = state
        elif trans == dart.DC2 and len(data) == 8:
            fields["volume_cl"] = dart.bcd_decode(data[:4])
            fields["amount_cents"] = dart.bcd_decode(data[4:])
        elif trans == dart.DC3 and len(data) == 4:
            fields["price_milli"] = dart.bcd_decode(data[:3])
            fields["nozzle"] = data[3] & 0x0F
            fields["nozzle_out"] = bool(data[3] & dart.NOZZLE_OUT)
        elif trans == dart.DC101 and len(data) == 11:
            totals = PumpTotals(pump=pump, nozzle=data[0], volume_cl=dart.bcd_decode(data[1:6]),
                                amount_cents=dart.bcd_decode(data[6:11]))
            self._totals_seq += 1
            self._totals[(pump, data[0])] = (self._totals_seq, totals)
            return False
        else:
            log.debug("dart field ignored", extra={"pump": pump, "trans": trans, "length": len(data)})
            return False
        return True
