"""The terminal's front panel: screen and keys. Backends are picked by URL."""

from __future__ import annotations

from typing import Any, Protocol

from contracts.errors import ConfigError

__all__ = ["KEYS", "Panel", "open_panel"]

KEYS = frozenset("0123456789") | {"ENTER", "CANCEL", "CLEAR"}


class Panel(Protocol):
    @property
    def languages(self) -> tuple[str, ...]:
        """Screen languages it can show (ui.screens.LANGUAGES)."""
        ...

    def show(self, screen: str, **fields: Any) -> None: ...

    def set_language(self, code: str) -> None:
        """Language of the following screens (a sale's card preference, tag 5F2D);
        unknown codes show English."""
        ...

    def read_key(self, timeout: float) -> str | None: ...

    def flush_keys(self) -> None:
        """Drop keys pressed before a prompt."""
        ...

    def close(self) -> None: ...


def open_panel(url: str, language: str = "en") -> Panel:
    """tcp://host:port (the simulator's front panel) or pygame:// (the device's own screen)."""
    if url.startswith("tcp://"):
        from drivers.panel.socket import SocketPanel
        host, _, port = url[len("tcp://"):].rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"panel URL needs host:port: {url}", key="devices.panel")
        return SocketPanel(host, int(port), language=language)
    if url.startswith("pygame://"):
        from drivers.panel.pygame_panel import PygamePanel
        return PygamePanel(language=language)
    raise ConfigError(f"unknown panel URL scheme: {url}", key="devices.panel")
