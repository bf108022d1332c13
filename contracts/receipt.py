"""A receipt line as the printer driver takes it: text and its style."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WIDTH", "ReceiptLine"]

WIDTH = 42  # characters per line on an 80 mm printer in font A


@dataclass(frozen=True)
class ReceiptLine:
    text: str
    bold: bool = False
    center: bool = False
