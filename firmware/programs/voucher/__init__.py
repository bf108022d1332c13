"""Paper vouchers at the terminal: a code typed at the idle screen, redeemed once by the registry, a sale of
the voucher's litres of its product, charged nothing (docs/terminal_loyalty.md)."""

from firmware.programs.voucher.program import CODE_DIGITS, VoucherProgram

__all__ = ["CODE_DIGITS", "VoucherProgram"]
