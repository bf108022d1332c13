"""Front panel over a TCP line protocol: the simulator shows the screen and sends key presses.

Terminal -> panel: {"screen": id, "lines": [...], "fields": {...}}; panel -> terminal: {"key": "5"}.
One JSON object per line. The connection is re-established when it drops.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from typing import Any

from drivers.panel import KEYS
from ui.screens import LANGUAGES, render

__all__ = ["SocketPanel"]

log = logging.getLogger(__name__)


class SocketPanel:
    def __init__(self, host: str, port: int, *, language: str = "en") -> None:
        self.host, self.port, self.language = host, port, language
        self._keys: queue.Queue[str] = queue.Queue()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._last: bytes | None = None
        self._thread = threading.Thread(target=self._reader, name="panel", daemon=True)
        self._thread.start()

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES

    def set_language(self, code: str) -> None:
        self.language = code.strip().lower()

    def show(self, screen: str, **fields: Any) -> None:
        lines = render(screen, self.language, **fields)
        doc = {"screen": screen, "lines": list(lines), "fields": {k: str(v) for k, v in fields.items()}}
        self._last = json.dumps(doc).encode() + b"\n"
        self._send(self._last)

    def read_key(self, timeout: float) -> str | None:
        try:
            return self._keys.get(timeout=timeout)
        except queue.Empty:
            return None

    def flush_keys(self) -> None:
        while not self._keys.empty():
            self._keys.get_nowait()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, data: bytes) -> None:
        with self._lock:
            if self._sock is None:
                return
            try:
                self._sock.sendall(data)
            except OSError:
                self._sock.close()
                self._sock = None

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sock = sock
        if self._last is not None:
            self._send(self._last)
        return sock

    def _reader(self) -> None:
        while not self._closed.is_set():
            sock = self._connect()
            if sock is None:
                self._closed.wait(0.2)
                continue
            buf = b""
            try:
                while not self._closed.is_set():
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        self._on_line(line)
            except OSError:
                pass
            with self._lock:
                if self._sock is sock:
                    sock.close()
                    self._sock = None
            time.sleep(0.1)

    def _on_line(self, line: bytes) -> None:
        try:
            key = json.loads(line).get("key")
        except (ValueError, AttributeError):
            log.warning("panel: malformed line dropped", extra={"size": len(line)})
            return
        if key in KEYS:
            self._keys.put(key)
        else:
            log.warning("panel: unknown key dropped")
