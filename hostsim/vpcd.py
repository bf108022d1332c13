"""A virtual smart card served over the vsmartcard vpcd wire protocol on loopback.

Wire format (vsmartcard ``vpcd.c``): every message, both ways, is a 2-byte big-endian length and a payload.
A 1-byte payload from the reader is a control message (0 power off, 1 power on, 2 reset, 4 get ATR); only
"get ATR" is answered. A longer payload is a C-APDU, answered with the R-APDU. A card that is absent closes
the connection and refuses (accept then close) new ones until a card is inserted again.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
from types import TracebackType
from typing import Protocol, Self

__all__ = [
    "CTRL_ATR",
    "CTRL_POWER_OFF",
    "CTRL_POWER_ON",
    "CTRL_RESET",
    "VirtualCard",
    "VirtualCardServer",
    "quickack",
    "recv_frame",
    "send_frame",
    "set_low_latency",
]

log = logging.getLogger(__name__)

CTRL_POWER_OFF = 0
CTRL_POWER_ON = 1
CTRL_RESET = 2
CTRL_ATR = 4
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class VirtualCard(Protocol):
    """What the server needs from a simulated card."""

    atr: bytes

    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def reset(self) -> None: ...
    def apdu(self, command: bytes) -> bytes: ...


def set_low_latency(sock: socket.socket) -> None:
    """Disable Nagle; without it (and quick ACKs) each APDU waits ~40 ms for a delayed ACK."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    quickack(sock)


def quickack(sock: socket.socket) -> None:
    """Re-arm TCP_QUICKACK: Linux clears it after a while, so call before every recv."""
    if _TCP_QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            pass


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        quickack(sock)
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed vpcd message, or None when the peer closed."""
    header = _recv_exact(sock, 2)
    if header is None:
        return None
    (size,) = struct.unpack(">H", header)
    return _recv_exact(sock, size) if size else b""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    if len(payload) > 0xFFFF:
        raise ValueError(f"vpcd frame too long: {len(payload)} bytes")
    sock.sendall(struct.pack(">H", len(payload)) + payload)


class VirtualCardServer:
    """Serves one virtual card slot to vpcd (or a bridge to it) on a loopback TCP port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the card server listens on loopback only, not {host!r}")
        self.host = host
        self._requested_port = port
        self.port = port
        self.apdu_count = 0
        self._card: VirtualCard | None = None
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- card slot -------------------------------------------------------------------------------------
    @property
    def card(self) -> VirtualCard | None:
        return self._card

    def insert(self, card: VirtualCard) -> None:
        """Put a card in the slot; the next connection from the reader finds it."""
        with self._lock:
            old = self._conn
            self._card = card
        if old is not None:  # swapping cards without removal: the reader must see a new card
            self._drop(old)

    def remove(self) -> None:
        """Take the card out: close the reader's connection and refuse new ones until insert()."""
        with self._lock:
            self._card = None
            conn = self._conn
        if conn is not None:
            self._drop(conn)

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Self:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if self.host == "::1" else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._requested_port))
        listener.listen(4)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"vpcd-card:{self.port}", daemon=True)
        self._thread.start()
        log.debug("virtual card server listening", extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            conn = self._conn
        if conn is not None:
            self._drop(conn)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------------------
    @staticmethod
    def _drop(conn: socket.socket) -> None:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self) -> None:
        listener = self._listener
        if listener is None:
            return
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not sel.select(timeout=0.1):
                    continue
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with self._lock:
                    card = self._card
                    if card is not None:
                        self._conn = conn
                if card is None:  # empty slot: the reader counts a refused connection as "no card"
                    conn.close()
                    continue
                try:
                    set_low_latency(conn)
                    self._session(conn, card)
                except OSError:
                    pass
                finally:
                    with self._lock:
                        if self._conn is conn:
                            self._conn = None
                    conn.close()

    def _session(self, conn: socket.socket, card: VirtualCard) -> None:
        while not self._stop.is_set():
            message = recv_frame(conn)
            if message is None or self._card is not card:
                return
            if len(message) == 1:
                answer = self._control(card, message[0])
                if answer is not None:
                    send_frame(conn, answer)
            elif message:
                send_frame(conn, self._apdu(card, message))

    @staticmethod
    def _control(card: VirtualCard, code: int) -> bytes | None:
        if code == CTRL_ATR:
            return bytes(card.atr)
        action = {CTRL_POWER_OFF: card.power_off, CTRL_POWER_ON: card.power_on,
                  CTRL_RESET: card.reset}.get(code)
        if action is None:
            log.warning("unknown vpcd control message", extra={"code": code})
            return None
        try:
            action()
        except Exception:  # a broken simulated card must not take the reader down
            log.exception("virtual card failed a control message", extra={"code": code})
        return None

    def _apdu(self, card: VirtualCard, command: bytes) -> bytes:
        self.apdu_count += 1
        try:
            response = bytes(card.apdu(command))
        except Exception:
            # Log the header only: the data field may carry a PAN or PIN block.
            log.exception("virtual card raised on an APDU", extra={"header": command[:4].hex()})
            return SW_NO_PRECISE_DIAGNOSIS
        if len(response) < 2 or len(response) > 0xFFFF:
            log.warning("virtual card gave a malformed R-APDU", extra={"length": len(response)})
            return SW_NO_PRECISE_DIAGNOSIS
        return response
