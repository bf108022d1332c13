"""A fleet customer's statement as a PDF document: every sale of the period (held and voided ones
marked and not counted), the amount per card as a bar chart, then the subtotals per card and per vehicle
and the total.

The same figures as registry.fleet.statements (its text and CSV); the words come from `StatementLabels`
(English by default; the back office fills them from its catalogues in the reader's language). Cards are
shown masked, as the statement holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.fleet.statements import Statement, Subtotal, money
from registry.pdfdoc import Section, table_pdf

__all__ = ["StatementLabels", "statement_pdf"]


@dataclass(frozen=True)
class StatementLabels:
    """The document's words; the templates take str.format fields named in their defaults."""

    title: str = "Statement: {customer}"
    period: str = "Customer {customer_id}, {start} to {end}"
    totals: str = ("{sales} sales, {litres} L, amount {amount} "
                   "(held and voided sales are listed but not counted)")
    columns: tuple[str, ...] = ("Date", "Card", "Vehicle", "Driver", "Station", "Product", "Litres", "Amount",
                                "Odometer", "Held / voided")
    held: str = "held"
    voided: str = "voided"
    per_card: str = "Per card"
    per_vehicle: str = "Per vehicle"
    card: str = "Card"
    vehicle: str = "Vehicle"
    sales: str = "Sales"
    litres: str = "Litres"
    amount: str = "Amount"
    total: str = "Total"
    no_vehicle: str = "-"


def _subtotals(first: str, subtotals: dict[str, Subtotal], labels: StatementLabels,
               rename: dict[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    header = [first, labels.sales, labels.litres, labels.amount]
    rows = [[(rename or {}).get(t.label, t.label), str(t.sales), money(t.volume_cl), money(t.amount_cents)]
            for t in sorted(subtotals.values(), key=lambda t: t.label)]
    return header, rows


def statement_pdf(st: Statement, labels: StatementLabels | None = None) -> bytes:
    """The statement `st` (registry.fleet.statements.statement) as PDF bytes."""
    words = labels or StatementLabels()
    rows = [[f"{r.local_time:%Y-%m-%d %H:%M}", r.card, r.vehicle, r.driver, r.station, r.product,
             money(r.volume_cl), money(r.amount_cents), "" if r.odometer_km is None else str(r.odometer_km),
             words.held if r.held else words.voided if r.voided else ""] for r in st.rows]
    t = st.total
    subtitle = "\n".join([
        words.period.format(customer_id=st.customer_id, start=st.start.isoformat(), end=st.end.isoformat()),
        words.totals.format(sales=t.sales, litres=money(t.volume_cl), amount=money(t.amount_cents))])
    cards = sorted(st.by_card.values(), key=lambda x: x.label)
    chart = ([c.label for c in cards], [c.amount_cents for c in cards], "money") if cards else None
    card_header, card_rows = _subtotals(words.card, st.by_card, words)
    vehicle_header, vehicle_rows = _subtotals(words.vehicle, st.by_vehicle, words, {"-": words.no_vehicle})
    total_header = ["", words.sales, words.litres, words.amount]
    total_rows = [[words.total, str(t.sales), money(t.volume_cl), money(t.amount_cents)]]
    return table_pdf(words.title.format(customer=st.customer), subtitle, list(words.columns), rows,
                     chart=chart,
                     sections=[Section(words.per_card, card_header, card_rows),
                               Section(words.per_vehicle, vehicle_header, vehicle_rows),
                               Section(words.total, total_header, total_rows)])
