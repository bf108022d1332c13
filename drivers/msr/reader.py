"""Magnetic stripe reader backends: one swipe of track 2 per line, as a keyboard-wedge (HID) head types it.

TcpMagstripeReader reads ";PAN=YYMM...?" lines from a TCP socket (the simulator's swipe server, or a bench
serial-to-TCP bridge) on a connection thread that reconnects when the line drops; MemoryMagstripeReader is
fed by tests. Both queue the raw lines and parse on wait_swipe(), so a garbled swipe raises CardError to the
caller and the reader carries on.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading

from firmware.magstripe import Track2, parse_track2

__all__ = ["MemoryMagstripeReader", "TcpMagstripeReader"]

log = logging.getLogger(__name__)

MAX_LINE = 256        # a track 2 line is at most 40 characters; anything far longer is noise


class _SwipeQueue:
    """Swipes as received, parsed when taken."""

    def __init__(self) -> None:
        self._swipes: queue.Queue[str] = queue.Queue()

    def wait_swipe(self, timeout: float) -> Track2 | None:
        try:
            line = self._swipes.get(timeout=timeout)
        except queue.Empty:
            return None
        return parse_track2(line)

    def flush(self) -> None:
        while True:
            try:
                self._swipes.get_nowait()
            except queue.Empty:
                return


class MemoryMagstripeReader(_SwipeQueue):
    """In-process reader: swipe() plays the cardholder."""

    def swipe(self, text: str) -> None:
        self._swipes.put(text)

    def close(self) -> None:
        self.flush()


class TcpMagstripeReader(_SwipeQueue):
    """Newline-terminated ASCII swipes over TCP; connects on first use and reconnects after a drop."""

    def __init__(self, host: str, port: int, *, retry_delay: float = 0.2) -> None:
        super().__init__()
        self.host, self.port, self.retry_delay = host, port, retry_delay
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._sock is not None

    def wait_swipe(self, timeout: float) -> Track2 | None:
        self._start()
        return super().wait_swipe(timeout)

    def flush(self) -> None:
        self._start()
        super().flush()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sock, self._sock = self._sock, None
            thread = self._thread
        if sock is not None:
            _shut(sock)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name="msr", daemon=True)
                self._thread.start()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return None
        sock.settimeout(None)
        with self._lock:
            if self._closed.is_set():
                sock.close()
                return None
            self._sock = sock
        log.info("msr: connected", extra={"host": self.host, "port": self.port})
        return sock

    def _run(self) -> None:
        while not self._closed.is_set():
            sock = self._connect()
            if sock is not None:
                try:
                    self._read(sock)
                except OSError:
                    pass
                with self._lock:
                    if self._sock is sock:
                        self._sock = None
                sock.close()
                if not self._closed.is_set():
                    log.warning("msr: connection lost, reconnecting", extra={"host": self.host, "port": self.port})
            self._closed.wait(self.retry_delay)

    def _read(self, sock: socket.socket) -> None:
        buf = b""
        while not self._closed.is_set():
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("ascii", errors="replace").strip()
                if text:
                    self._swipes.put(text)
            if len(buf) > MAX_LINE:
                log.warning("msr: overlong line dropped", extra={"size": len(buf)})
                buf = b""


def _shut(sock: socket.socket) -> None:
    """Shut down before closing, so that a thread blocked in recv() returns."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
