"""The "cash" program: a pump released by a signed-in attendant against cash (a prepaid amount, or litres
paid afterwards). It never claims a card; the attendant's menu hands the sale runner a Claim of this
program (SaleRunner.run) and the sale goes through the same journal, pump, settlement and receipt as any.

The sale is settled for what was dispensed; the receipt shows the cash prepaid and the change due. Its
card number is CASH_NUMBER (masked 000000******0000 on the wire: no card was used); the attendant's id is
in the sale's data, so the shift report counts the sale for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from firmware.attendant.paper import cash_receipt
from firmware.programs.base import CardIn, Claim, Decline, Grant, ReceiptHead, SaleSteps
from firmware.programs.build import ProgramDeps
from firmware.sale.record import Preset, SaleRecord

__all__ = ["CASH_NUMBER", "CashOrder", "CashProgram", "build"]

CASH_NUMBER = "0" * 16
PROGRAM = "cash"


@dataclass(frozen=True)
class CashOrder:
    """An attendant's cash prepay: by amount (cents) or volume (cl), up to most (the driver's preset is
    then asked by the sale machine, as for a card)."""

    attendant: str
    kind: str            # "amount" or "volume"
    most: int

    def __post_init__(self) -> None:
        if self.kind not in ("amount", "volume") or self.most <= 0:
            raise ValueError("a cash order is an amount or a volume above zero")


class CashProgram:
    name = PROGRAM

    def claim(self, card: CardIn) -> Claim | Decline | None:
        return None                      # no card: the attendant's menu starts a cash sale

    def order(self, order: CashOrder) -> Claim:
        return Claim(self, order)

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        order: CashOrder = claim.card
        pump = steps.choose_pump()
        nozzles = steps.station().nozzles(pump)
        steps.begin(pump, CASH_NUMBER)
        steps.authorizing({"attendant": order.attendant})     # the journal's way to a grant; no host asked
        preset = Preset.amount(order.most) if order.kind == "amount" else Preset.volume(order.most)
        return Grant(preset, nozzles=nozzles, reference=f"cash:{order.attendant}"[:32],
                     data={"attendant": order.attendant, "cash": order.kind})

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        return ()                        # the attendant holds the cash; the shift report counts it

    def recover(self, sale: SaleRecord) -> Grant | Decline:
        return Decline(DeclineReason.INTERRUPTED)      # nothing is held anywhere before the pump runs

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        prepaid = sale.preset.value if sale.preset is not None and sale.preset.kind == "amount" else None
        attendant = sale.data.get("attendant")
        return cash_receipt(head, prepaid_cents=prepaid, attendant=attendant if isinstance(attendant, str)
                            else "")


def build(deps: ProgramDeps) -> CashProgram:
    return CashProgram()
