"""The simulator's side of the terminal's front panel: shows screens, sends key presses (loopback TCP)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PanelServer", "close_listener"]


class PanelServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._srv = socket.create_server((host, port))
        self.port: int = self._srv.getsockname()[1]
        self._conn: socket.socket | None = None
        self._cond = threading.Condition()
        self.screens: list[dict[str, Any]] = []     # every screen the terminal showed, in order
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="panel-server", daemon=True)

    def start(self) -> PanelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        close_listener(self._srv)
        with self._cond:
            if self._conn is not None:
                try:
                    self._conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._conn.close()
                self._conn = None

    @property
    def current(self) -> dict[str, Any] | None:
        with self._cond:
            return self.screens[-1] if self.screens else None

    def press(self, *keys: str) -> None:
        for key in keys:
            with self._cond:
                conn = self._conn
            if conn is None:
                raise ConnectionError("terminal panel not connected")
            conn.sendall(json.dumps({"key": key}).encode() + b"\n")

    def wait_for(self, screens: str | tuple[str, ...], timeout: float, since: int = 0) -> dict[str, Any]:
        """Wait until a screen with one of these ids is shown at index >= since; return it."""
        wanted = (screens,) if isinstance(screens, str) else screens
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for s in self.screens[since:]:
                    if s["screen"] in wanted:
                        return s
                left = deadline - time.monotonic()
                if left <= 0:
                    last = self.screens[-1]["screen"] if self.screens else None
                    raise TimeoutError(f"screen {wanted} not shown within {timeout}s (last: {last})")
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.screens)

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
            with self._cond:
                if self._conn is not None:
                    self._conn.close()
                self._conn = conn
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue
                    doc["at"] = time.time()
                    with self._cond:
                        self.screens.append(doc)
                        self._cond.notify_all()
                    for cb in list(self.listeners):
                        cb(doc)
        except OSError:
            return
        finally:
            with self._cond:
                if self._conn is conn:
                    self._conn = None
            conn.close()


def close_listener(srv: socket.socket) -> None:
    """Close a listening socket so that a thread blocked in accept() returns (close alone does not)."""
    try:
        srv.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    srv.close()
