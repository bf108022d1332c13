"""AcquirerLink: one TCP connection to the acquirer, frames of a 2-byte big-endian length then the message.

exchange() sends one request and returns the response with the matching MTI (request MTI + 10, the
repeat digit cleared: 0221 -> 0230) and STAN (field 11); other frames (late answers to requests that
already timed out) are dropped; an 0800 network management request from the acquirer (echo test) is
answered with an 0810 while waiting. Fields of a response the terminal does not use are ignored. No
answer in time, a refused or dropped connection -> HostUnavailable;
a frame over the size limit, or cut short -> MessageError. After a failure the connection is closed
and the next exchange() connects again; so does one the acquirer closed while it was idle. Frames are
never logged: they hold card numbers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

from contracts.errors import HostUnavailable, HostUnreachable, MessageError
from contracts.iso8583 import DIALECT, Dialect, network_response
from drivers.url import DeviceUrl

__all__ = ["MAX_FRAME", "AcquirerLink", "open_acquirer_link"]

log = logging.getLogger(__name__)

MAX_FRAME = 4096  # largest message we accept; our 0100 with full ICC data is well under 1 KiB
_MIN_FRAME = 12  # MTI (4) + primary bitmap (8)


def _key(raw: bytes, dialect: Dialect) -> tuple[str, str]:
    """MTI and STAN (field 11) from the head of a frame: fields 2-10 are stepped over by their lengths, so a
    frame is matched whatever the fields after 11 hold; its reader decodes it whole by its own dialect."""
    spec = dialect.full_spec()
    try:
        mti = raw[:4].decode("ascii")
        bitmap = int.from_bytes(raw[4:12], "big")
        if len(raw) < _MIN_FRAME or not mti.isdigit():
            raise ValueError(mti)
        pos, stan = 12 + (8 if bitmap >> 63 & 1 else 0), ""
        for number in range(2, 12):
            if not bitmap >> (64 - number) & 1:
                continue
            field = spec[str(number)]
            digits = int(field["len_type"])
            length = int(raw[pos:pos + digits].decode("ascii")) if digits else int(field["max_len"])
            pos += digits
            value = raw[pos:pos + length].decode("ascii")
            pos += length
            if number == 11:
                stan = value
        if stan and not (len(stan) == 6 and stan.isdigit()):
            raise ValueError(stan)
    except (ValueError, UnicodeDecodeError):
        raise MessageError("cannot read the frame's MTI and STAN") from None
    return mti, stan


def response_mti(request_mti: str) -> str:
    """ISO 8583:1987 MTI position 3 is the function (0 request/advice, 1 response); 4 is origin/repeat."""
    return request_mti[:2] + str(int(request_mti[2]) + 1) + "0"


def _peer_closed(sock: socket.socket) -> bool:
    """True if the peer hung up or reset an idle connection; unread bytes (a late answer) are not a close."""
    # a non-blocking peek rather than select(): select() fails on descriptors above FD_SETSIZE
    sock.settimeout(0)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:  # nothing to read: still open
        return False
    except OSError:  # reset by the peer, or the socket is unusable
        return True


class AcquirerLink:
    """Request/response over TCP; thread-safe (one exchange at a time)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0,
                 response_timeout: float = 30.0, max_frame: int = MAX_FRAME,
                 dialect: Dialect = DIALECT) -> None:
        self.dialect = dialect
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.max_frame = max_frame
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf.clear()

    def _connect(self) -> socket.socket:
        if self._sock is not None and _peer_closed(self._sock):
            log.info("acquirer closed the idle connection, reconnecting",
                     extra={"host": self.host, "port": self.port})
            self._close()
        if self._sock is None:
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            except OSError as exc:  # refused, unreachable, timed out
                raise HostUnreachable("cannot connect to the acquirer", host=self.host, port=self.port,
                                      reason=type(exc).__name__) from exc
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buf.clear()
        return self._sock

    def exchange(self, raw: bytes, timeout: float | None = None) -> bytes:
        """Send raw and return the matching response; timeout defaults to response_timeout."""
        if not _MIN_FRAME <= len(raw) <= min(self.max_frame, 0xFFFF):
            raise MessageError("request does not fit a frame", length=len(raw))
        mti, stan = _key(raw, self.dialect)
        want = (response_mti(mti), stan)
        wait = self.response_timeout if timeout is None else timeout
        with self._lock:
            sock = self._connect()
            try:
                sock.settimeout(wait)
                sock.sendall(len(raw).to_bytes(2, "big") + raw)
            except OSError as exc:
                self._close()
                raise HostUnavailable("sending to the acquirer failed", mti=mti, stan=stan,
                                      reason=type(exc).__name__) from exc
            deadline = time.monotonic() + wait
            while True:
                frame = self._read_frame(sock, deadline, mti, stan)
                try:
                    got = _key(frame, self.dialect)
                except MessageError:
                    self._close()
                    raise
                if got == want:
                    return frame
                if got[0] == "0800":
                    self._answer_network(sock, frame, mti, stan)
                    continue
                log.warning("dropped unmatched acquirer frame", extra={"mti": got[0], "stan": got[1]})

    def _answer_network(self, sock: socket.socket, frame: bytes, mti: str, stan: str) -> None:
        try:
            answer = network_response(frame, self.dialect)
        except MessageError:
            log.warning("unreadable network management request dropped")
            return
        if answer is None:
            return
        try:
            sock.sendall(len(answer).to_bytes(2, "big") + answer)
        except OSError as exc:
            self._close()
            raise HostUnavailable("answering the acquirer failed", mti=mti, stan=stan,
                                  reason=type(exc).__name__) from exc
        log.info("answered network management request", extra={"mti": "0810"})

    def _read_frame(self, sock: socket.socket, deadline: float, mti: str, stan: str) -> bytes:
        self._fill(sock, 2, deadline, mti, stan, mid_frame=False)
        length = int.from_bytes(self._buf[:2], "big")
        if length > self.max_frame or length < _MIN_FRAME:
            self._close()
            raise MessageError("acquirer frame length out of range", length=length, max=self.max_frame)
        self._fill(sock, 2 + length, deadline, mti, stan, mid_frame=True)
        frame = bytes(self._buf[2:2 + length])
        del self._buf[:2 + length]
        return frame

    def _fill(self, sock: socket.socket, size: int, deadline: float, mti: str, stan: str, *,
              mid_frame: bool) -> None:
        while len(self._buf) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                # a partial frame stays buffered: the stream is still in step for the next exchange
                raise HostUnavailable("no answer from the acquirer in time", mti=mti, stan=stan)
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self._close()
                raise HostUnavailable("connection to the acquirer failed", mti=mti, stan=stan,
                                      reason=type(exc).__name__) from exc
            if not chunk:
                had = len(self._buf)
                self._close()
                if mid_frame or had:
                    raise MessageError("acquirer frame cut short", expected=max(size - 2, 0),
                                       got=max(had - 2, 0))
                raise HostUnavailable("acquirer closed the connection", mti=mti, stan=stan)
            self._buf += chunk


def open_acquirer_link(url: DeviceUrl, **options: Any) -> AcquirerLink:
    """tcp://host:port: the acquirer's ISO 8583 port (connects on the first exchange)."""
    host, port = url.address()
    return AcquirerLink(host, port, **options)
