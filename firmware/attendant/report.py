"""The shift's X and Z reports: a pure function from the journal's completed sales of the shift (and the
cash the attendants took for top-ups) to totals per product, payment type and attendant. No I/O here;
firmware.attendant.shift picks the sales, firmware.attendant.paper prints them.

A sale counts in the shift whose number (the journal's seq, given when the sale completes) is above the
shift's starting number: a sale completes once and gets one number, so it falls in exactly one shift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware.sale.machine import SaleState
from firmware.sale.record import SaleRecord

__all__ = ["NO_ATTENDANT", "CashIn", "Shift", "ShiftReport", "Totals", "build_report"]

NO_ATTENDANT = "-"        # a self-service sale: no attendant authorized it


@dataclass(frozen=True)
class Totals:
    """One group's figures: dispensing sales, litres (cl), the pump's amount and what was charged (cents:
    the amount less what adjuncts such as vouchers took off)."""

    sales: int = 0
    volume_cl: int = 0
    amount_cents: int = 0
    charged_cents: int = 0

    def add(self, rec: SaleRecord) -> Totals:
        return Totals(self.sales + (1 if (rec.volume_cl or 0) > 0 else 0),
                      self.volume_cl + (rec.volume_cl or 0),
                      self.amount_cents + (rec.amount_cents or 0),
                      self.charged_cents + (rec.charged_cents or 0))

    def doc(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CashIn:
    """Cash an attendant took outside a sale: a top-up put on a card's wallet."""

    attendant: str
    cents: int


@dataclass(frozen=True)
class Shift:
    """A shift of the terminal: its number, when it opened (epoch s) and the last sale number before it."""

    number: int
    opened_at: float
    after_seq: int


@dataclass(frozen=True)
class ShiftReport:
    shift: Shift
    last_seq: int                       # the highest sale number in the report (after_seq when none)
    total: Totals
    by_product: Mapping[str, Totals]
    by_payment: Mapping[str, Totals]
    by_attendant: Mapping[str, Totals]
    topups: Mapping[str, tuple[int, int]] = field(default_factory=dict)   # attendant -> (count, cents)

    @property
    def cash_cents(self) -> int:
        """What the drawer should hold: cash sales as charged, plus cash taken for top-ups."""
        return self.by_payment.get("cash", Totals()).charged_cents + sum(c for _, c in self.topups.values())

    def doc(self) -> dict[str, Any]:
        """A plain document of the report (kept in the journal, sent to the registry)."""
        return {"shift": self.shift.number, "opened_at": self.shift.opened_at,
                "after_seq": self.shift.after_seq,
                "last_seq": self.last_seq, "total": self.total.doc(),
                "by_product": {k: v.doc() for k, v in self.by_product.items()},
                "by_payment": {k: v.doc() for k, v in self.by_payment.items()},
                "by_attendant": {k: v.doc() for k, v in self.by_attendant.items()},
                "topups": {k: list(v) for k, v in self.topups.items()}, "cash_cents": self.cash_cents}


def _attendant(rec: SaleRecord) -> str:
    who = rec.data.get("attendant")
    return who if isinstance(who, str) and who else NO_ATTENDANT


def _grouped(sales: Sequence[SaleRecord], key: Any) -> dict[str, Totals]:
    out: dict[str, Totals] = {}
    for rec in sales:
        k = key(rec)
        out[k] = out.get(k, Totals()).add(rec)
    return dict(sorted(out.items()))


def build_report(shift: Shift, sales: Iterable[SaleRecord], topups: Iterable[CashIn] = ()) -> ShiftReport:
    """The report of one shift from the journal's sales: only completed sales numbered after the shift's
    start count (others given are left out), each once by its id."""
    seen: dict[str, SaleRecord] = {}
    for rec in sales:
        if rec.state is SaleState.COMPLETED and rec.seq is not None and rec.seq > shift.after_seq:
            seen.setdefault(rec.id, rec)
    mine = sorted(seen.values(), key=lambda r: r.seq or 0)
    total = Totals()
    for rec in mine:
        total = total.add(rec)
    cash: dict[str, tuple[int, int]] = {}
    for t in topups:
        n, cents = cash.get(t.attendant, (0, 0))
        cash[t.attendant] = (n + 1, cents + t.cents)
    return ShiftReport(
        shift=shift, last_seq=max((r.seq or 0 for r in mine), default=shift.after_seq), total=total,
        by_product=_grouped(mine, lambda r: r.product or "-"), by_payment=_grouped(mine, lambda r: r.program),
        by_attendant=_grouped(mine, _attendant), topups=dict(sorted(cash.items())))
