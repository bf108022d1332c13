"""The bank card's part of the receipt: the card block (application, AID, entry, verification, codes)."""

from __future__ import annotations

from contracts.receipt import ReceiptLine
from firmware.programs.bank.summary import BankSummary, cvm_text, entry_text
from firmware.programs.base import ReceiptHead
from firmware.receipt import bank_receipt
from firmware.sale.record import SaleRecord

__all__ = ["bank_receipt_for", "held_cents"]


def held_cents(sale: SaleRecord) -> int:
    """What the bank pre-authorized (held on the account): the approved amount, not the preset the driver
    may have lowered below it; the preset for a sale journaled before the approved amount was kept."""
    bank = BankSummary.from_doc(sale.data) if sale.data else None
    if bank is not None and bank.approved_cents is not None:
        return bank.approved_cents
    return sale.preset.value if sale.preset else 0


def bank_receipt_for(sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
    bank = BankSummary.from_doc(sale.data) if sale.data else BankSummary(entry_mode="", preauth_cents=0)
    fields = head.fields()
    if sale.charged_cents is not None:
        fields["amount_cents"] = sale.charged_cents
    return bank_receipt(
        **fields, preauth_cents=held_cents(sale), app_label=bank.app_label or "",
        aid_hex=bank.aid or "", entry_mode=entry_text(bank.entry_mode), cvm=cvm_text(bank.cvm_results),
        auth_code=sale.reference or "", tvr_hex=bank.tvr or "", tsi_hex=bank.tsi or "",
        partial=bool(bank.partial))
