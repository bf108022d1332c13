"""DartController: contracts.pump.PumpController over one Wayne DART line.

A background thread owns the line: it polls every configured pump round-robin and sends the commands other
threads queue. On start it only polls and asks for status and filling info, so a filling in progress
survives a terminal restart and its final figures can still be read. Its first frame to each pump carries
TX# 0, which tells the pump the master restarted (Wayne DART line protocol spec).

Figures on the wire carry the pump's own decimal places (DC7 DPVOL, DPAMO, DPUNP, asked with CD1 0x02 on
first contact) unless the configuration pins them; they are scaled to ours (cl, cents, thousandths).

Bound: a STOP for any pump is written to the line before the poll thread starts its next exchange, so
within DartLink.max_operation_time of being queued (10 exchanges of reply_limit: 2.0 s at the defaults,
one reply_limit, 0.2 s, while the other pumps are merely silent on a babbling line). Every pump gets at
most one queued command per round, and a pump that goes offline fails its queued commands at once.
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

from contracts.errors import ConfigError, PumpError, PumpLinkError, PumpStateError, PumpTimeout
from contracts.pump import PumpState, PumpStatus, PumpTotals

from . import commands, dart, replies
from .link import DartLink, SerialLike, Transactions, open_port
from .replies import STATES, Decimals
from .statuswait import wait_in_table

__all__ = ["STATES", "DartController"]

log = logging.getLogger(__name__)

_BUSY = (PumpState.AUTHORIZED, PumpState.FILLING)
_STARTED = (PumpState.AUTHORIZED, PumpState.FILLING, PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED)


class _Command:
    def __init__(self, pump: int, transactions: Transactions) -> None:
        self.pump = pump
        self.transactions = transactions
        self.done = threading.Event()
        self.cancelled = False
        self.error: PumpError | None = None
        self.urgent = commands.request(dart.CMD_STOP)[0] in transactions


class DartController:
    """PumpController for the DART pumps `pumps` (numbers 1..32) on the serial line at `url`.

    reply_timeout: window for a pump's first answer byte; poll_interval: pause after each round of polls;
    command_timeout: how long a caller waits for a command to go out and for the pump to report the
    resulting state; offline_after and offline_time: missed polls and seconds of silence before a pump is
    OFFLINE. `decimals` (DPVOL, DPAMO, DPUNP) pins every pump's decimal places instead of reading them
    (DC7). `serial_factory` replaces serial.serial_for_url (transport injection for tests and benches).
    """

    def __init__(self, url: str, pumps: Sequence[int], *, baudrate: int = 9600, reply_timeout: float = 0.05,
                 poll_interval: float = 0.02, offline_after: int = 3, offline_time: float = 1.0,
                 command_timeout: float = 2.0, decimals: tuple[int, int, int] | None = None,
                 serial_factory: Callable[..., Any] | None = None) -> None:
        if not pumps or any(n < 1 or n > 32 for n in pumps):
            raise ConfigError("pumps must be numbers 1..32", url=url, pumps=list(pumps))
        self.url, self.pumps, self.baudrate = url, tuple(dict.fromkeys(pumps)), baudrate
        self.reply_timeout, self.poll_interval = reply_timeout, poll_interval
        self.offline_after, self.offline_time = offline_after, offline_time
        self.command_timeout = command_timeout
        self._serial_factory = serial_factory
        self._port: SerialLike | None = None
        self._link: DartLink | None = None
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.turns = 0                         # polling rounds so far
        self._queues: dict[int, deque[_Command]] = {n: deque() for n in self.pumps}
        self._status = {n: PumpStatus(pump=n, state=PumpState.OFFLINE) for n in self.pumps}
        self._urgent: deque[_Command] = deque()
        self._totals: dict[tuple[int, int], tuple[int, int]] = {}     # (pump, COUN) -> (seq, total)
        self._totals_seq = 0
        self._was_online = {n: False for n in self.pumps}
        self._pinned = Decimals(*decimals) if decimals is not None else None
        self._decimals: dict[int, Decimals | None] = {n: self._pinned for n in self.pumps}

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the port, flush stale input and start polling. Idempotent."""
        if self._thread is not None:
            return
        port = open_port(self.url, self.baudrate, min(self.reply_timeout, 0.01), self._serial_factory)
        try:
            port.reset_input_buffer()
        except OSError as exc:
            raise PumpLinkError("cannot flush pump line", url=self.url, error=str(exc)) from exc
        self._port = port
        self._link = DartLink(port, reply_timeout=self.reply_timeout, offline_after=self.offline_after,
                              offline_time=self.offline_time)
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
        for q in (*self._queues.values(), self._urgent):
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
        return wait_in_table(self._cond, self._status, pump, predicate, timeout)

    # -- commands ------------------------------------------------------------------------------------
    def _submit(self, pump: int, transactions: Transactions, *, wait: bool = True) -> None:
        self._check(pump)
        if self._thread is None:
            raise PumpLinkError("controller not started", pump=pump)
        cmd = _Command(pump, transactions)
        with self._cond:
            if wait and self._status[pump].state == PumpState.OFFLINE:
                raise PumpTimeout("pump offline", pump=pump)
            (self._urgent if cmd.urgent else self._queues[pump]).append(cmd)
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
        self._submit(pump, commands.request(dart.CMD_RESET, dart.CMD_STATUS))
        self._expect(pump, st.seq, (PumpState.RESET,), "RESET")

    def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                  amount_cents: int | None = None) -> None:
        """RESET if the last filling is finished, then allowed nozzles, preset and AUTHORIZE in one frame."""
        commands.authorize(pump, nozzles, volume_cl, amount_cents, None)       # bad arguments fail first
        preset = volume_cl is not None or amount_cents is not None
        trans = commands.authorize(pump, nozzles, volume_cl, amount_cents,
                                   self._pump_decimals(pump) if preset else None)
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
        """STOP an authorization or a filling: FILLING COMPLETE. It jumps the queue (bound: module doc)."""
        st = self.status(pump)
        self._submit(pump, commands.request(dart.CMD_STOP, dart.CMD_STATUS))
        if st.state in _BUSY:
            self._expect(pump, st.seq, (PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED), "STOP")

    def suspend(self, pump: int) -> None:
        """SUSPEND a filling (CD1 0x0D): the flow pauses, the sale stays open; resume() continues it. The
        optional status 8 SUSPENDED reads as FILLING; PumpStateError unless authorized or filling."""
        st = self.status(pump)
        if st.state not in _BUSY:
            raise PumpStateError("SUSPEND needs a filling", pump=pump, state=st.state.value)
        self._submit(pump, commands.request(dart.CMD_SUSPEND, dart.CMD_STATUS))

    def resume(self, pump: int) -> None:
        """RESUME a suspended filling (CD1 0x0E). Harmless when nothing is suspended, so allowed in any
        state but OFFLINE: a terminal that lost track after a restart can always release the pump."""
        self._submit(pump, commands.request(dart.CMD_RESUME, dart.CMD_STATUS))

    def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        """CD5 price update in the pump's price decimals; prices must cover nozzles 1..n. A pump that is not
        programmed takes them and reports FILLING COMPLETE (Pump Interface 2.1.3; seen on a real Wayne,
        intelipump docs/real-wayne-price-programming-review.md); it is then RESET, ready to authorize."""
        commands.check_prices(pump, prices)
        data = commands.prices(pump, prices, self._pump_decimals(pump))
        st = self.status(pump)
        if st.state in _BUSY:
            raise PumpStateError("prices cannot change during a sale", pump=pump, state=st.state.value)
        self._submit(pump, [(dart.CD5, data), (dart.CD1, bytes((dart.CMD_STATUS,)))])
        if st.state != PumpState.NOT_PROGRAMMED:
            return
        if self._expect(pump, st.seq, (PumpState.FILLING_COMPLETED, PumpState.RESET), "price update").state \
                == PumpState.FILLING_COMPLETED:
            try:
                self.reset(pump)           # leave it ready to authorize, as a new pump is expected to be
            except PumpStateError as exc:  # the prices were taken all the same; authorize() resets again
                log.warning("dart pump programmed but not reset", extra={"pump": pump, "error": str(exc)})

    def totals(self, pump: int, nozzle: int) -> PumpTotals:
        """Electronic totals of one nozzle: its volume counter (CD101 COUN n) and its amount counter
        (COUN 0x10 + n), each answered by a DC101. DART counts nozzles 1..8 only."""
        counters = commands.counters(pump, nozzle)
        self._pump_decimals(pump)
        with self._cond:
            seq0 = self._totals_seq
        for coun in counters:
            self._submit(pump, [(dart.CD101, bytes((coun,)))])
        deadline = time.monotonic() + self.command_timeout
        with self._cond:
            while True:
                got = [self._totals.get((pump, coun)) for coun in counters]
                if all(g is not None and g[0] > seq0 for g in got):
                    vol, amt = (g[1] for g in got if g is not None)
                    return PumpTotals(pump=pump, nozzle=nozzle, volume_cl=vol, amount_cents=amt)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PumpTimeout("no totals from pump", pump=pump, nozzle=nozzle)
                self._cond.wait(left)

    def _pump_decimals(self, pump: int) -> Decimals:
        """The pump's decimals, waiting for its DC7 up to command_timeout; PumpTimeout if it never comes."""
        self._check(pump)
        deadline = time.monotonic() + self.command_timeout
        with self._cond:
            while (dec := self._decimals[pump]) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PumpTimeout("pump parameters (decimals) not received", pump=pump)
                self._cond.wait(left)
            return dec

    # -- poll thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        link = self._link
        if link is None:
            return
        while not self._stop.is_set():
            self.turns += 1                    # the watchdog's sign that the line makes progress
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

    def _send(self, link: DartLink, cmd: _Command) -> None:
        try:
            link.send(cmd.pump, cmd.transactions)
        except PumpLinkError as exc:
            cmd.error = exc
            cmd.done.set()
            raise
        except PumpError as exc:
            cmd.error = exc
        cmd.done.set()

    def _send_urgent(self, link: DartLink) -> None:
        while self._urgent:
            cmd = self._urgent.popleft()
            if not cmd.cancelled:
                self._send(link, cmd)

    def _serve(self, link: DartLink, pump: int) -> None:
        """One command at most (so a long queue cannot hold the other pumps), then a poll; urgent commands
        for any pump go out before each."""
        self._send_urgent(link)
        queue = self._queues[pump]
        while queue:
            cmd = queue.popleft()
            if not cmd.cancelled:
                self._send(link, cmd)
                break
        self._send_urgent(link)
        try:
            transactions = link.poll(pump)
        except PumpTimeout:
            transactions = None
        if (online := link.online(pump)) and not self._was_online[pump]:
            # first contact (or back after offline): ask, never command; a running filling is left alone
            asks = (dart.CMD_STATUS, dart.CMD_FILLING_INFO)
            for ask in asks if self._pinned is not None else (dart.CMD_PARAMETERS, *asks):
                queue.append(_Command(pump, commands.request(ask)))
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
        q = self._queues[pump]
        while q:
            cmd = q.popleft()
            cmd.error = PumpTimeout("pump offline", pump=pump)
            cmd.done.set()

    def _fail_all(self, exc: PumpLinkError) -> None:
        for pump in self.pumps:
            self._was_online[pump] = False
            self._set_offline(pump)
        while self._urgent:
            cmd = self._urgent.popleft()
            cmd.error = exc
            cmd.done.set()

    def _absorb(self, pump: int, transactions: Transactions) -> None:
        """Fold one data frame from the pump into its status, all or none: a malformed field drops the
        whole frame (and asks again), so no figure is ever paired with a stale one. Frames before the
        pump's decimals are known are dropped too (its DC7 asks for everything again)."""
        with self._cond:
            pinned = self._pinned is not None
            dec = self._decimals[pump]
            try:
                got = replies.read(transactions, dec or replies.OURS)
            except dart.DartError as exc:
                log.warning("dart bad frame dropped", extra={"pump": pump, "error": str(exc)})
                self._queues[pump].append(_Command(pump, commands.request(dart.CMD_FILLING_INFO,
                                                                          dart.CMD_STATUS)))
                return
            if got.unknown_status is not None:
                log.info("dart unknown status", extra={"pump": pump, "code": got.unknown_status})
            if got.decimals is not None and not pinned:
                self._decimals[pump] = got.decimals
                if dec != got.decimals:        # what came before was read wrong or not at all: ask again
                    self._queues[pump].append(_Command(pump, commands.request(dart.CMD_STATUS,
                                                                              dart.CMD_FILLING_INFO)))
            if dec is None:                    # decimals not known yet: nothing of it can be read right
                self._cond.notify_all()
                return
            for coun, total in got.totals:
                self._totals_seq += 1
                self._totals[(pump, coun)] = (self._totals_seq, total)
            if fields := got.fields:
                st = self._status[pump]
                self._status[pump] = replace(st, seq=st.seq + 1, **fields)
            self._cond.notify_all()
