"""The simulator's side of the terminal's front panel: shows screens, sends key presses (loopback TCP)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from contracts.errors import MessageError
from hostsim.line_server import LineServer, close_listener
from ui.view import View

__all__ = ["PanelServer", "close_listener"]


class PanelServer(LineServer):
    """Records every screen the terminal shows (one JSON object a line); press() sends {"key": ...} lines."""

    name = "panel"
    device = "terminal panel"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.screens: list[dict[str, Any]] = []     # every screen the terminal showed, in order
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    @property
    def current(self) -> dict[str, Any] | None:
        with self._cond:
            return self.screens[-1] if self.screens else None

    def view(self, shown: dict[str, Any] | None = None) -> View | None:
        """The View of a screen the terminal showed (the current one by default); None for a screen that came
        without one or with a broken one (an older terminal, a garbled line)."""
        doc = self.current if shown is None else shown
        if doc is None or "view" not in doc:
            return None
        try:
            return View.from_doc(doc["view"])
        except MessageError:
            return None

    def press(self, *keys: str) -> None:
        for key in keys:
            self._send_line(json.dumps({"key": key}).encode())

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

    def _on_line(self, line: bytes) -> None:
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):      # RecursionError: nested too deep for json
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("screen"), str):   # JSON, but no screen
            return
        doc["at"] = time.time()
        with self._cond:
            self.screens.append(doc)
            self._cond.notify_all()
        for cb in list(self.listeners):
            cb(doc)
