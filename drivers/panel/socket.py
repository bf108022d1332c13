"""Front panel over a TCP line protocol: the simulator shows the screen and sends key presses.

Terminal -> panel: {"screen": id, "lines": [...], "fields": {...}, "view": View.to_doc()};
panel -> terminal: {"key": "5"}.
One JSON object per line. The connection is re-established when it drops.
"""

from __future__ import annotations

import json
import logging
import queue
from typing import Any

from drivers.line_client import LineClient
from drivers.panel import KEYS
from drivers.panel.language import ScreenLanguage
from drivers.url import DeviceUrl

__all__ = ["SocketPanel", "open_socket_panel"]

log = logging.getLogger(__name__)


def open_socket_panel(url: DeviceUrl, *, language: str = "en") -> SocketPanel:
    host, port = url.address()
    return SocketPanel(host, port, language=language)


class SocketPanel(ScreenLanguage):
    def __init__(self, host: str, port: int, *, language: str = "en") -> None:
        self.host, self.port, self.language = host, port, language
        self._keys: queue.Queue[str] = queue.Queue()
        self._last: bytes | None = None
        self._line = LineClient(host, port, self._on_line, name="panel", on_connect=self._repeat_last)
        self._line.start()

    def show(self, screen: str, **fields: Any) -> None:
        view = self.view(screen, **fields)
        doc = {"screen": view.screen, "lines": list(view.plain_lines()),
               "fields": {k: str(v) for k, v in fields.items()}, "view": view.to_doc()}
        self._last = json.dumps(doc).encode() + b"\n"
        self._line.send(self._last)

    def read_key(self, timeout: float) -> str | None:
        try:
            return self._keys.get(timeout=timeout)
        except queue.Empty:
            return None

    def flush_keys(self) -> None:
        while not self._keys.empty():
            self._keys.get_nowait()

    def close(self) -> None:
        self._line.close()

    def _repeat_last(self) -> None:
        """A (re)connected panel shows the current screen at once."""
        if self._last is not None:
            self._line.send(self._last)

    def _on_line(self, line: bytes) -> None:
        try:
            key = json.loads(line).get("key")
        except (ValueError, AttributeError, RecursionError):   # RecursionError: hostile nesting
            log.warning("panel: malformed line dropped", extra={"size": len(line)})
            return
        if isinstance(key, str) and key in KEYS:
            self._keys.put(key)
        else:
            log.warning("panel: unknown key dropped")
