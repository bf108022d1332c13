"""DART master link layer for one RS-485 line: TX# bookkeeping, ACK/NAK and retries, polls, reply windows.

Rules from the Wayne DART line protocol spec: a retry keeps its TX#; a repeated TX# from the pump is ACKed
and its data dropped; TX# 0 means the peer restarted; other TX# mismatches are NAKed; the sender resets
its TX# to 0 after 3 NAKs. Works over any pyserial-like object (read, write, timeout, reset_input_buffer;
in_waiting is used when present). Not thread-safe: one thread owns a link.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from contracts.errors import PumpLinkError, PumpTimeout

from . import dart

__all__ = ["NAK_LIMIT", "DartLink", "SerialLike", "Transactions", "open_port"]

log = logging.getLogger(__name__)

Transactions = list[tuple[int, bytes]]
NAK_LIMIT = 3          # NAKs before the sender resets its TX# to 0
_GARBLED = object()    # an answer arrived but did not decode (bad CRC, noise)
_SHORT_FRAME = 3       # ADR CTRL SF: the shortest frame on the line


class SerialLike(Protocol):
    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def reset_input_buffer(self) -> None: ...


def open_port(url: str, baudrate: int, timeout: float,
              factory: Callable[..., Any] | None = None) -> SerialLike:
    """The DART line at url, 8O1 (Wayne DART line protocol spec), through serial_for_url or `factory`."""
    if factory is not None:
        return factory(url, baudrate=baudrate)  # type: ignore[no-any-return]
    try:
        import serial  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - pyserial is a core dependency
        raise PumpLinkError("pyserial is not installed: pip install pyserial") from exc
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, bytesize=8, parity=serial.PARITY_ODD, stopbits=1,
                                     timeout=timeout)
    except (OSError, ValueError) as exc:
        raise PumpLinkError("cannot open pump line", url=url, error=str(exc)) from exc
    return port  # type: ignore[no-any-return]


class _PumpLine:
    """Per-pump link state."""

    def __init__(self) -> None:
        self.tx = 0          # TX# of our next data frame; 0 first, so the pump sees we restarted
        self.rx_last = -1    # last TX# accepted from the pump, -1 when none yet
        self.missed = 0      # consecutive polls without an answer
        self.online = False
        self.last_answer = 0.0   # clock of the pump's last answer
        self.unacked = False     # a data frame went unacknowledged: it may or may not have been taken


class DartLink:
    """Master side of one DART line.

    reply_timeout is the window for the first byte of an answer (50 ms suits 9600 baud); the window stretches
    by inter_byte_timeout while bytes keep coming, but never past reply_limit after the request went out
    (default reply_timeout + 0.15 s: some 130 bytes at 9600 baud 8O1, more than any DART reply). The limit
    is absolute, so a babbling line cannot hold the master. Bytes that arrived within the window count even
    when this thread runs again only after it (a loaded CPU). A pump is offline after offline_after
    consecutive polls without an answer (noise is no answer; a garbled frame from its address is) spanning
    at least offline_time seconds, so a short stall of the line or the host does not end a filling; it is
    online again at its next answer. No single poll() or send() takes longer than max_operation_time.
    """

    def __init__(self, port: SerialLike, *, reply_timeout: float = 0.05, inter_byte_timeout: float = 0.01,
                 retries: int = 3, offline_after: int = 3, offline_time: float = 1.0,
                 reply_limit: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.reply_timeout = reply_timeout
        self.inter_byte_timeout = inter_byte_timeout
        self.reply_limit = reply_limit if reply_limit is not None else reply_timeout + 0.15
        self.retries = retries
        self.offline_after = offline_after
        self.offline_time = offline_time
        self._clock = clock
        self._lines: dict[int, _PumpLine] = {}
        self._splitter = dart.FrameSplitter()
        wanted = min(reply_timeout, 0.01)   # read slice; the reply window is timed here, not by the port
        if getattr(port, "timeout", None) != wanted:
            try:
                self.port.timeout = wanted
            except Exception as exc:  # termios.error is no OSError; each reconfigure is a tcsetattr
                raise PumpLinkError("cannot set serial timeout", error=str(exc)) from exc

    @property
    def max_operation_time(self) -> float:
        """Upper bound of one poll() or send(): a send makes at most retries + 1 + 2 * NAK_LIMIT exchanges
        (silences, then NAKs before and after the TX# reset), each cut off at reply_limit."""
        return (self.retries + 1 + 2 * NAK_LIMIT) * self.reply_limit

    # -- state ---------------------------------------------------------------------------------------
    def _line(self, pump: int) -> _PumpLine:
        line = self._lines.get(pump)
        if line is None:
            dart.pump_address(pump)  # validates 1..32
            line = self._lines[pump] = _PumpLine()
        return line

    def online(self, pump: int) -> bool:
        return self._line(pump).online

    def tx(self, pump: int) -> int:
        """TX# the next data frame to this pump will carry."""
        return self._line(pump).tx

    def rx_last(self, pump: int) -> int:
        return self._line(pump).rx_last

    def restart(self, pump: int) -> None:
        """Forget the pump's sequence state, as after our own restart (next frame carries TX# 0)."""
        self._lines[pump] = _PumpLine()

    # -- raw I/O -------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except OSError as exc:
            raise PumpLinkError("serial write failed", error=str(exc)) from exc

    def _read_some(self, size: int = 0) -> bytes:
        """Read `size` bytes (blocking up to the port's timeout slice), or with size 0 what is waiting (at
        least one byte)."""
        try:
            if not size:
                size = max(1, int(getattr(self.port, "in_waiting", 0) or 0))
            return bytes(self.port.read(size))
        except OSError as exc:
            raise PumpLinkError("serial read failed", error=str(exc)) from exc

    def _exchange(self, pump: int, request: bytes) -> Any:
        """Send request, return the pump's answer: a dart.Frame, None on silence, _GARBLED on noise."""
        try:
            self.port.reset_input_buffer()
        except OSError as exc:
            raise PumpLinkError("serial flush failed", error=str(exc)) from exc
        self._splitter.reset()
        self._write(request)
        addr = dart.pump_address(pump)
        start = self._clock()
        deadline = start + self.reply_timeout
        limit = start + self.reply_limit      # absolute: bytes that keep coming never push past it
        garbled = False
        # Until the first byte comes, wait for a whole short frame in one read: no answer is shorter, and
        # it spares a TIOCINQ, a select and a read per reply, the bulk of the poll loop's CPU.
        want = _SHORT_FRAME
        last_look = False
        while True:
            if self._clock() >= deadline:
                # the window is over, perhaps while this thread waited for the CPU: what came in it counts
                if last_look or not self._waiting():
                    break
                last_look, want = True, 0
            chunk = self._read_some(want)
            if not chunk:
                continue
            want = 0
            if not last_look:
                deadline = min(limit, max(deadline, self._clock() + self.inter_byte_timeout))
            for raw in self._splitter.feed(chunk):
                if raw == request:      # our own echo on a 2-wire adapter
                    continue
                try:
                    frame = dart.decode_resync(raw)
                except dart.DartError as exc:
                    log.debug("dart bad frame", extra={"pump": pump, "error": str(exc), "raw": raw.hex()})
                    garbled = garbled or raw[0] == addr      # our pump answered, garbled; else noise
                    continue
                if frame.addr != addr or frame.kind == dart.POLL:
                    continue
                return frame
        return _GARBLED if garbled else None

    def _waiting(self) -> bool:
        try:
            return bool(getattr(self.port, "in_waiting", 0))
        except OSError as exc:
            raise PumpLinkError("serial read failed", error=str(exc)) from exc

    def _answered(self, line: _PumpLine, pump: int) -> None:
        line.missed = 0
        line.last_answer = self._clock()
        if not line.online:
            log.info("dart pump online", extra={"pump": pump})
        line.online = True

    def _silent(self, line: _PumpLine, pump: int) -> None:
        line.missed += 1
        if line.online and line.missed >= self.offline_after \
                and self._clock() - line.last_answer >= self.offline_time:
            log.warning("dart pump offline", extra={"pump": pump, "missed": line.missed})
            line.online = False

    # -- protocol ------------------------------------------------------------------------------------
    def poll(self, pump: int) -> Transactions:
        """POLL the pump: its new transactions (ACKed), or [] for EOT, a repeat or a NAKed frame.

        Raises PumpTimeout when the pump stays silent (or answers noise) within the reply window.
        """
        line = self._line(pump)
        addr = dart.pump_address(pump)
        reply = self._exchange(pump, dart.encode_short(addr, dart.POLL))
        if reply is None or reply is _GARBLED:
            if reply is None:                  # noise is no answer: a silent pump goes offline
                self._silent(line, pump)
            raise PumpTimeout("no answer to poll", pump=pump, garbled=reply is _GARBLED)
        self._answered(line, pump)
        if reply.kind != dart.DATA:
            return []                      # EOT (or a stray ACK/NAK): nothing to report
        verdict = dart.rx_verdict(line.rx_last, reply.txn)
        if verdict == dart.RX_REJECT:
            log.info("dart NAK out-of-sequence TX#", extra={"pump": pump, "txn": reply.txn,
                                                            "last": line.rx_last})
            self._write(dart.encode_short(addr, dart.NAK, reply.txn))
            return []
        self._write(dart.encode_short(addr, dart.ACK, reply.txn))
        if verdict == dart.RX_DUPLICATE:
            return []
        line.rx_last = reply.txn
        return list(reply.transactions)

    def send(self, pump: int, transactions: Transactions) -> None:
        """Send one data frame and wait for its ACK, retrying with the same TX#.

        A silent pump is retried `retries` times, then PumpTimeout. After NAK_LIMIT NAKs the TX# is reset to
        0 (which the pump must accept as a restart) and the frame tried once more; PumpLinkError if that
        is NAKed too.
        """
        line = self._line(pump)
        addr = dart.pump_address(pump)
        if line.unacked:
            # The last frame's ACK never came, so the pump may hold its TX# as the last taken: a new frame
            # under the next TX# would be NAKed, under the same one ACKed and dropped as a retry. TX# 0 is
            # a restart, which the pump takes in any case.
            line.tx = 0
        frame = dart.encode_data(addr, line.tx, transactions)
        silences = 0
        naks = 0
        was_reset = False
        while True:
            reply = self._exchange(pump, frame)
            if isinstance(reply, dart.Frame) and reply.kind == dart.ACK and reply.txn == line.tx:
                self._answered(line, pump)
                line.tx = dart.next_txn(line.tx)
                line.unacked = False
                return
            if isinstance(reply, dart.Frame) and reply.kind == dart.NAK:
                self._answered(line, pump)
                naks += 1
                if naks >= NAK_LIMIT:
                    if was_reset:
                        raise PumpLinkError("data frame NAKed after TX# reset", pump=pump, txn=line.tx)
                    log.warning("dart TX# reset after NAKs", extra={"pump": pump, "txn": line.tx})
                    line.tx = 0
                    frame = dart.encode_data(addr, 0, transactions)
                    naks = 0
                    was_reset = True
                continue
            # silence, noise, or an answer that is not our ACK: resend unchanged (same TX#)
            silences += 1
            if reply is None:
                self._silent(line, pump)
            if silences > self.retries:
                line.unacked = True
                raise PumpTimeout("no ACK for data frame", pump=pump, txn=line.tx)
