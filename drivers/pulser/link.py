"""The terminal's side of a pump node's UART: one request, one reply, retried with the same SEQ.

A reply that does not come within reply_timeout is asked for again (the node answers a repeated SEQ from
its last reply, so a command is never carried out twice); after `tries` the node counts as silent
(PumpTimeout). Replies to an older SEQ (a late answer) are dropped. Thread-safe: one lock per line.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from contracts.errors import PumpLinkError, PumpStateError, PumpTimeout

from . import wire

__all__ = ["NodeLink", "open_node_port"]

NAK_TEXT = {wire.NAK_TYPE: "unknown request", wire.NAK_LENGTH: "bad request length",
            wire.NAK_BUSY: "refused in this state", wire.NAK_UNCONFIGURED: "not calibrated",
            wire.NAK_VALUE: "value out of range"}


def open_node_port(url: str, baudrate: int) -> Any:
    """The node's UART at url (any serial_for_url URL), 8N1."""
    import serial  # type: ignore[import-untyped]

    try:
        return serial.serial_for_url(url, baudrate=baudrate, bytesize=8, parity=serial.PARITY_NONE,
                                     stopbits=1, timeout=0.01)
    except (OSError, ValueError) as exc:
        raise PumpLinkError("cannot open pump node line", url=url, error=str(exc)) from exc


class NodeLink:
    def __init__(self, port: Any, *, reply_timeout: float = 0.15, tries: int = 3) -> None:
        self.port, self.reply_timeout, self.tries = port, reply_timeout, tries
        self._lock = threading.Lock()
        self._seq = secrets.randbelow(255)    # a restarted terminal's first SEQ is not its last one
        self._reader = wire.Reader()
        self.retries = 0              # requests sent again after a lost frame
        self.stale = 0                # replies dropped as late or foreign

    def request(self, kind: int, payload: bytes = b"") -> bytes:
        """The reply's payload; PumpTimeout when the node stays silent, PumpStateError on a NAK."""
        with self._lock:
            self._seq = self._seq % 255 + 1
            frame = wire.encode(self._seq, kind, payload)
            for attempt in range(self.tries):
                if attempt:
                    self.retries += 1
                self._reader.clear()           # a partial frame left by noise must not swallow the reply
                try:
                    self.port.write(frame)
                except OSError as exc:
                    raise PumpLinkError("pump node line write failed", error=str(exc)) from exc
                reply = self._await(self._seq)
                if reply is None:
                    continue
                rkind, body = reply
                if rkind == wire.NAK:
                    code = body[0] if body else 0
                    raise PumpStateError("pump node refused: " + NAK_TEXT.get(code, "error"), code=code)
                if rkind != kind | wire.REPLY:
                    raise PumpLinkError("pump node answered another request", kind=rkind)
                return body
            raise PumpTimeout("pump node does not answer", tries=self.tries)

    def _await(self, seq: int) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + self.reply_timeout
        while True:
            frame = self._reader.next()
            if frame is not None:
                if frame[0] == seq:
                    return frame[1], frame[2]
                self.stale += 1
                continue
            if time.monotonic() >= deadline:
                return None
            try:
                data = self.port.read(max(1, getattr(self.port, "in_waiting", 0) or 1))
            except OSError as exc:
                raise PumpLinkError("pump node line read failed", error=str(exc)) from exc
            if data:
                self._reader.feed(data)

    def close(self) -> None:
        self.port.close()
