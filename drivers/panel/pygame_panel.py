"""The terminal's own screen and keys on the device (a Pi with a 800x480 display and a USB keypad),
via pygame.

pygame (SDL) wants one thread at a time: show() draws and read_key() pumps events, both under one lock.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.errors import ConfigError
from drivers.panel import KEYS
from drivers.panel.language import ScreenLanguage
from drivers.url import DeviceUrl
from ui.render import draw_screen

__all__ = ["PygamePanel", "open_pygame_panel", "panel_key"]

_KEYMAP: dict[int, str] = {
    **{getattr(pygame, f"K_{d}"): str(d) for d in range(10)},
    **{getattr(pygame, f"K_KP{d}"): str(d) for d in range(10)},
    pygame.K_RETURN: "ENTER", pygame.K_KP_ENTER: "ENTER",
    pygame.K_ESCAPE: "CANCEL",
    pygame.K_BACKSPACE: "CLEAR", pygame.K_DELETE: "CLEAR",
}


def panel_key(key: int) -> str | None:
    """The panel key for a pygame key code: digits, Return -> ENTER, Escape -> CANCEL, Backspace -> CLEAR."""
    name = _KEYMAP.get(key)
    return name if name in KEYS else None


class PygamePanel(ScreenLanguage):
    """Panel protocol on a pygame window: fullscreen 800x480 on the device, windowed for a bench."""

    def __init__(self, *, language: str = "en", size: tuple[int, int] = (800, 480),
                 fullscreen: bool = True) -> None:
        self.language = language
        self._lock = threading.Lock()
        self._keys: collections.deque[str] = collections.deque()
        self._lines: tuple[str, ...] = ()
        self._closed = False
        try:
            pygame.display.init()
            pygame.font.init()
            flags = pygame.FULLSCREEN if fullscreen else 0
            self._surface = pygame.display.set_mode(size, flags)
            pygame.display.set_caption("forecourt terminal")
            if fullscreen:
                pygame.mouse.set_visible(False)
        except pygame.error as exc:
            raise ConfigError(f"no display for the pygame panel: {exc}", key="devices.panel") from exc

    def show(self, screen: str, **fields: Any) -> None:
        lines = self.render(screen, **fields)
        with self._lock:
            self._lines = lines
            self._draw()

    def read_key(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                if not self._keys and not self._closed:
                    self._pump()
                if self._keys:
                    return self._keys.popleft()
            if self._closed or time.monotonic() >= deadline:
                return None
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def flush_keys(self) -> None:
        with self._lock:
            if not self._closed:
                self._pump()
            self._keys.clear()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                pygame.display.quit()

    # -- under the lock ------------------------------------------------------------------------------
    def _draw(self) -> None:
        if self._closed:
            return
        self._surface.fill((0, 0, 0))
        draw_screen(self._surface, self._surface.get_rect(), self._lines)
        pygame.display.flip()

    def _pump(self) -> None:
        for event in pygame.event.get():
            if event.type == pygame.KEYDOWN:
                key = panel_key(event.key)
                if key is not None:
                    self._keys.append(key)
            elif event.type in (pygame.VIDEOEXPOSE, getattr(pygame, "WINDOWEXPOSED", -1)):
                self._draw()


def open_pygame_panel(url: DeviceUrl, *, language: str = "en") -> PygamePanel:
    """pygame://: the device's own screen and keypad."""
    return PygamePanel(language=language)
