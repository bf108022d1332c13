"""Magnetic stripe reader backends: one swipe of track 2 per line, as a keyboard-wedge (HID) head types it.

TcpMagstripeReader reads ";PAN=YYMM...?" lines from a TCP socket (the simulator's swipe server, or a bench
serial-to-TCP bridge) on a connection thread that reconnects when the line drops; MemoryMagstripeReader is
fed by tests. Both queue the raw lines and parse on wait_swipe(), so a garbled swipe raises CardError to the
caller and the reader carries on.
"""

from __future__ import annotations

import logging
import queue
import threading

from contracts.track2 import Track2, parse_track2
from drivers.line_client import LineClient
from drivers.url import DeviceUrl

__all__ = ["MemoryMagstripeReader", "TcpMagstripeReader", "open_memory_msr", "open_no_msr", "open_tcp_msr"]

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
        self._line = LineClient(host, port, self._on_line, name="msr", retry_delay=retry_delay,
                                max_line=MAX_LINE, log=log)

    @property
    def connected(self) -> bool:
        return self._line.connected

    @property
    def _thread(self) -> threading.Thread | None:
        """The connection thread, once the reader is first used."""
        return self._line.thread

    def wait_swipe(self, timeout: float) -> Track2 | None:
        self._line.start()
        return super().wait_swipe(timeout)

    def flush(self) -> None:
        self._line.start()
        super().flush()

    def close(self) -> None:
        self._line.close()

    def _on_line(self, line: bytes) -> None:
        text = line.decode("ascii", errors="replace").strip()
        if text:
            self._swipes.put(text)


def open_tcp_msr(url: DeviceUrl) -> TcpMagstripeReader:
    host, port = url.address()
    return TcpMagstripeReader(host, port)


def open_memory_msr(url: DeviceUrl) -> MemoryMagstripeReader:
    return MemoryMagstripeReader()


def open_no_msr(url: DeviceUrl) -> None:
    """none://: no stripe head fitted, so no reader."""
