"""The simulator's side of the magnetic stripe reader: swipes a card's track 2 to the terminal (loopback TCP)."""

from __future__ import annotations

import socket
import threading

from hostsim.panel_server import close_listener

__all__ = ["SwipeServer"]


class SwipeServer:
    """Accepts one terminal connection at a time; swipe() types ";track2?" and a newline, as a HID head does."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._srv = socket.create_server((host, port))
        self.port: int = self._srv.getsockname()[1]
        self._conn: socket.socket | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="swipe-server", daemon=True)

    def start(self) -> SwipeServer:
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
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def wait_connected(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._conn is not None, timeout=timeout):
                raise TimeoutError(f"terminal magstripe reader not connected within {timeout}s")

    def swipe(self, track2_content: str) -> None:
        """Send the content between the sentinels (e.g. "PAN=YYMMSSS...") as one swipe."""
        if "\n" in track2_content:
            raise ValueError("track 2 content cannot hold a newline")
        with self._cond:
            conn = self._conn
        if conn is None:
            raise ConnectionError("terminal magstripe reader not connected")
        conn.sendall(f";{track2_content}?\n".encode())

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
            threading.Thread(target=self._watch, args=(conn,), name="swipe-conn", daemon=True).start()

    def _watch(self, conn: socket.socket) -> None:
        """The terminal sends nothing; reading only notices when it hangs up."""
        try:
            while conn.recv(1024):
                pass
        except OSError:
            pass
        finally:
            with self._cond:
                if self._conn is conn:
                    self._conn = None
            conn.close()
