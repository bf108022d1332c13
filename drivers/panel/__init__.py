"""The terminal's front panel: screen and keys. Backends are picked by URL."""

from __future__ import annotations

from typing import Any, Protocol

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
    from drivers.devices import open_device

    panel: Panel = open_device("panel", url, language=language)
    return panel
