"""The magnetic stripe reader head of the hybrid card reader. Backends are picked by URL."""

from __future__ import annotations

from typing import Protocol

from contracts.errors import ConfigError
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
    if url in ("", "none://"):
        return None
    if url.startswith("tcp://"):
        from drivers.msr.reader import TcpMagstripeReader
        host, _, port = url[len("tcp://"):].rpartition(":")
        if not (host and port.isdigit()):
            raise ConfigError("magstripe reader URL needs host:port", key="bank.magstripe", url=url)
        return TcpMagstripeReader(host, int(port))
    if url == "memory://":
        from drivers.msr.reader import MemoryMagstripeReader
        return MemoryMagstripeReader()
    raise ConfigError("unknown magstripe reader URL scheme", key="bank.magstripe", url=url)
