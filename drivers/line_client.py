"""A TCP client for newline-terminated lines that reconnects: the transport under the panel and the MSR head.

start() spawns one thread that connects to host:port, hands every line received to on_line, and after a failed
connect or a drop waits retry_delay and connects again, until close(). A callback that raises is logged and
the thread carries on.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator

__all__ = ["LineClient", "recv_lines", "shut"]

_log = logging.getLogger(__name__)


class LineClient:
    """Lines from host:port go to on_line (raw bytes, without the newline) on the connection thread.

    on_connect runs on that thread after each (re)connection. With max_line, a partial line that grows past it
    is dropped as noise. With log, connections, drops and dropped lines are logged as "<name>: ...".
    """

    def __init__(self, host: str, port: int, on_line: Callable[[bytes], None], *, name: str,
                 retry_delay: float = 0.2, max_line: int | None = None,
                 on_connect: Callable[[], None] | None = None, log: logging.Logger | None = None) -> None:
        self.host, self.port, self.name, self.retry_delay = host, port, name, retry_delay
        self._on_line, self._on_connect, self._max_line, self._log = on_line, on_connect, max_line, log
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._sock is not None

    def start(self) -> None:
        """Start the connection thread, once; does nothing after close()."""
        with self._lock:
            if self.thread is None and not self._closed.is_set():
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()

    def send(self, data: bytes) -> None:
        """Send if connected, else drop the data; a failed send drops the connection
        (the thread reconnects)."""
        with self._lock:
            if self._sock is None:
                return
            try:
                self._sock.sendall(data)
            except OSError:
                shut(self._sock)
                self._sock = None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sock, self._sock = self._sock, None
            thread = self.thread
        if sock is not None:
            shut(sock)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a peer that stops reading fails a send after 5 s (the connection is dropped and made again)
        # instead of blocking the sender, a device thread, for ever
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        with self._lock:
            if self._closed.is_set():
                sock.close()
                return None
            self._sock = sock
        if self._log is not None:
            self._log.info(f"{self.name}: connected", extra={"host": self.host, "port": self.port})
        if self._on_connect is not None:
            try:
                self._on_connect()
            except Exception:  # a callback's bug must not stop the connection thread
                log = self._log or _log
                log.exception(f"{self.name}: on_connect callback failed")
        return sock

    def _run(self) -> None:
        while not self._closed.is_set():
            sock = self._connect()
            if sock is not None:
                try:
                    for line in recv_lines(sock, max_line=self._max_line, on_drop=self._dropped):
                        self._deliver(line)
                except OSError:
                    pass
                with self._lock:
                    if self._sock is sock:
                        self._sock = None
                sock.close()
                if not self._closed.is_set() and self._log is not None:
                    self._log.warning(f"{self.name}: connection lost, reconnecting",
                                      extra={"host": self.host, "port": self.port})
            self._closed.wait(self.retry_delay)

    def _deliver(self, line: bytes) -> None:
        try:
            self._on_line(line)
        except Exception:  # a callback's bug must not stop the connection thread
            log = self._log or _log  # the size, never the line: it may be track data
            log.exception(f"{self.name}: on_line callback failed", extra={"size": len(line)})

    def _dropped(self, size: int) -> None:
        if self._log is not None:
            self._log.warning(f"{self.name}: overlong line dropped", extra={"size": size})


def recv_lines(sock: socket.socket, bufsize: int = 4096, *, max_line: int | None = None,
               on_drop: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Lines received on sock, without their newlines, until the peer hangs up
    (recv's OSError passes through).

    With max_line, a partial line that grows past it is dropped as noise and its size given to on_drop.
    """
    buf = b""
    while chunk := sock.recv(bufsize):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line
        if max_line is not None and len(buf) > max_line:
            if on_drop is not None:
                on_drop(len(buf))
            buf = b""


def shut(sock: socket.socket) -> None:
    """Shut down before closing, so that a thread blocked in recv() or accept() returns
    (close alone does not)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
