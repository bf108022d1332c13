"""A loopback TCP server for one terminal connection at a time, speaking newline-terminated lines.

The simulator's panel and swipe servers are this plus what they send and what they make of the lines received.
"""

from __future__ import annotations

import socket
import threading
from typing import Self

from drivers.line_client import recv_lines, shut

__all__ = ["LineServer", "close_listener"]


class LineServer:
    """Accepts the terminal; a new connection replaces the old one; the terminal is expected to reconnect."""

    name = "line"                 # thread names: "<name>-server", "<name>-conn"
    device = "terminal device"    # what is not connected, in error messages

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._srv = socket.create_server((host, port))
        self.port: int = self._srv.getsockname()[1]
        self._conn: socket.socket | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-server", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        close_listener(self._srv)
        self.drop()

    def drop(self) -> None:
        """Close the terminal's connection (a cable glitch); the terminal is expected to reconnect."""
        with self._cond:
            conn, self._conn = self._conn, None
        if conn is not None:
            shut(conn)

    def wait_connected(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._conn is not None, timeout=timeout):
                raise TimeoutError(f"{self.device} not connected within {timeout}s")

    def _send_line(self, line: bytes) -> None:
        """Send one line (without its newline) to the terminal; ConnectionError if none is connected."""
        with self._cond:
            conn = self._conn
        if conn is None:
            raise ConnectionError(f"{self.device} not connected")
        conn.sendall(line + b"\n")

    def _on_line(self, line: bytes) -> None:
        """One line from the terminal, without its newline, on the connection's thread; ignored by default."""

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.drop()
            with self._cond:
                if self._stop.is_set():
                    conn.close()
                    return
                self._conn = conn
                self._cond.notify_all()
            threading.Thread(target=self._read, args=(conn,), name=f"{self.name}-conn", daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        """Hand each line to _on_line until the terminal hangs up (or the connection is dropped)."""
        try:
            for line in recv_lines(conn, 65536):
                self._on_line(line)
        except OSError:
            return
        finally:
            with self._cond:
                if self._conn is conn:
                    self._conn = None
            conn.close()


def close_listener(srv: socket.socket) -> None:
    """Close a listening socket so that a thread blocked in accept() returns (close alone does not)."""
    shut(srv)
