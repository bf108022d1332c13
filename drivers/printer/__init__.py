"""ESC/POS receipt printer (python-escpos) chosen by URL."""

from drivers.printer.escpos_printer import ReceiptPrinter, open_printer

__all__ = ["ReceiptPrinter", "open_printer"]
