"""Receipt printing through python-escpos; the backend comes from the URL.

tcp://host:port is a network printer (raw port 9100 style), file:///dev/usb/lp0 a device file,
memory:// keeps the bytes (python-escpos Dummy) for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from contracts.errors import PrinterError
from contracts.receipt import ReceiptLine
from drivers.url import DeviceUrl

__all__ = ["ReceiptPrinter", "open_file_printer", "open_memory_printer", "open_network_printer",
           "open_printer"]

log = logging.getLogger(__name__)


class ReceiptPrinter:
    def __init__(self, backend: Any) -> None:
        self._backend = backend

    @property
    def output(self) -> bytes:
        """Bytes written so far (memory:// only)."""
        return bytes(getattr(self._backend, "output", b""))

    def print_lines(self, lines: Sequence[ReceiptLine]) -> None:
        p = self._backend
        try:
            p.hw("INIT")
            for line in lines:
                p.set(align="center" if line.center else "left", bold=line.bold)
                p.text(line.text + "\n")
            p.cut()
            flush = getattr(p, "flush", None)
            if callable(flush):
                flush()
        except Exception as exc:  # python-escpos raises its own and OS errors
            discard = getattr(p, "discard", None)
            if callable(discard):
                discard()
            raise PrinterError("receipt printer failed", error=type(exc).__name__) from exc

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing a failed printer must not hide the first error
                log.debug("printer close failed", extra={"error": type(exc).__name__})


def open_printer(url: str) -> ReceiptPrinter:
    """tcp://host:port, file:///dev/usb/lp0 or memory:// (drivers.devices)."""
    from drivers.devices import open_device

    printer: ReceiptPrinter = open_device("printer", url)
    return printer


def _escpos() -> Any:
    from escpos import printer as escpos_printer  # type: ignore[import-untyped]

    return escpos_printer


def open_network_printer(url: DeviceUrl) -> ReceiptPrinter:
    host, port = url.address()
    return ReceiptPrinter(_NetworkPerJob(_escpos().Network, host, port))


def open_file_printer(url: DeviceUrl) -> ReceiptPrinter:
    return ReceiptPrinter(_escpos().File(url.host + url.path))


def open_memory_printer(url: DeviceUrl) -> ReceiptPrinter:
    return ReceiptPrinter(_escpos().Dummy())


class _NetworkPerJob:
    """A network printer connection opened for each receipt, so a printer restart is harmless."""

    def __init__(self, cls: Any, host: str, port: int) -> None:
        self._cls, self._host, self._port = cls, host, port
        self._conn: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._conn is None:
            self._conn = self._cls(self._host, self._port, timeout=5)
            self._conn.open()
        return getattr(self._conn, name)

    def flush(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    output = b""   # a network printer keeps no copy of what it printed

    def close(self) -> None:
        self.discard()

    def discard(self) -> None:
        """Forget a connection that failed, so the next receipt connects afresh."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - the connection is already broken
                log.debug("closing a failed printer connection", extra={"error": type(exc).__name__})
