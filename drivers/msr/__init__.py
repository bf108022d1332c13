"""The magnetic stripe reader head of the hybrid card reader. Backends are picked by URL."""

from __future__ import annotations

from typing import Protocol

from contracts.track2 import Track2

__all__ = ["MagstripeReader", "open_msr"]


class MagstripeReader(Protocol):
    def wait_swipe(self, timeout: float) -> Track2 | None:
        """The next swipe's track 2; None on timeout. A garbled swipe raises CardError."""
        ...

    def flush(self) -> None:
        """Drop swipes made before a prompt."""
        ...

    def close(self) -> None: ...


def open_msr(url: str) -> MagstripeReader | None:
    """"" or none:// (no reader fitted), tcp://host:port (the simulator or a serial-to-TCP head), memory://."""
    if not url:
        return None
    from drivers.devices import open_device

    reader: MagstripeReader | None = open_device("magstripe", url)
    return reader
