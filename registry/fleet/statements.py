"""What an operator reads about fleet accounts: a customer's statement of sales for a period (per card and
per vehicle subtotals, as a text table or CSV) and an account's summary (wallets with balance and available,
every limit with used and remaining). Read only.

Decisions: a statement's dates are the sale's local date in its account's time zone, start and end
included. Held sales (failed a registry check: registry.checks) are listed, marked "held", and left out of
the subtotals and the total, as they are out of every wallet and limit. So are voided ones (registry.voids:
their debit and usage were reversed), marked "voided": what counts is what counts in turnover
(registry.turnover_rollup.counts), so a statement's total is the turnover of the customer's accounts and
what their ledger kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet import ledger, rules, usage
from registry.fleet.admin import get
from registry.models import Account, Card, Customer, Driver, Limit, Transaction, Vehicle, Wallet
from registry.turnover_rollup import counts
from registry.voids import VOIDED

__all__ = ["AccountSummary", "LimitLine", "Statement", "StatementRow", "Subtotal", "WalletLine",
           "account_summary", "money", "statement", "statement_csv", "statement_text", "summary_text"]

COLUMNS = ("date", "card", "vehicle", "driver", "station", "product", "litres", "amount", "odometer", "held",
           "voided")


def money(cents: int) -> str:
    """Cents as a decimal string, no float: -1234 -> "-12.34"."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


@dataclass(frozen=True)
class StatementRow:
    local_time: dt.datetime
    card_id: int | None
    card: str
    vehicle: str
    driver: str
    station: str
    product: str
    volume_cl: int
    amount_cents: int
    odometer_km: int | None
    held: bool
    voided: bool = False

    def fields(self) -> list[str]:
        return [f"{self.local_time:%Y-%m-%d %H:%M}", self.card, self.vehicle, self.driver, self.station,
                self.product, money(self.volume_cl), money(self.amount_cents),
                "" if self.odometer_km is None else str(self.odometer_km), "held" if self.held else "",
                VOIDED if self.voided else ""]


@dataclass
class Subtotal:
    label: str
    sales: int = 0
    volume_cl: int = 0
    amount_cents: int = 0

    def add(self, row: StatementRow) -> None:
        self.sales, self.volume_cl, self.amount_cents = (self.sales + 1, self.volume_cl + row.volume_cl,
                                                         self.amount_cents + row.amount_cents)


@dataclass
class Statement:
    customer_id: int
    customer: str
    start: dt.date
    end: dt.date
    rows: list[StatementRow] = field(default_factory=list)
    by_card: dict[str, Subtotal] = field(default_factory=dict)
    by_vehicle: dict[str, Subtotal] = field(default_factory=dict)
    total: Subtotal = field(default_factory=lambda: Subtotal("total"))


def _utc(day: dt.date, tz: str) -> dt.datetime:
    """Local midnight starting `day` in `tz`, as naive UTC (the database's datetimes)."""
    local = dt.datetime.combine(day, dt.time(), tzinfo=rules.local_time(dt.datetime(2000, 1, 1), tz).tzinfo)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def statement(s: Session, customer_id: int, start: dt.date, end: dt.date) -> Statement:
    """The customer's fleet sales from `start` to `end` (local dates, both included), in time order."""
    customer = get(s, Customer, customer_id, "customer")
    if end < start:
        raise ConfigError("a statement's last day is on or after its first", key="to")
    accounts = {a.id: a for a in s.scalars(select(Account).where(Account.customer_id == customer_id))}
    result = Statement(customer_id, customer.name, start, end)
    if not accounts:
        return result
    spans = [and_(Transaction.account_id == a.id, Transaction.finished_at >= _utc(start, a.timezone),
                  Transaction.finished_at < _utc(end + dt.timedelta(days=1), a.timezone))
             for a in accounts.values()]
    query = (select(Transaction, Vehicle.number, Driver.code)
             .outerjoin(Vehicle, Vehicle.id == Transaction.vehicle_id)
             .outerjoin(Driver, Driver.id == Transaction.driver_id)
             .where(or_(*spans)).order_by(Transaction.finished_at, Transaction.id))
    for sale, vehicle, driver in s.execute(query):
        tz = accounts[sale.account_id or 0].timezone
        row = StatementRow(rules.local_time(sale.finished_at, tz).replace(tzinfo=None), sale.card_id,
                           sale.card_masked, vehicle or "", driver or "", sale.station_id, sale.product or "",
                           sale.volume_cl, sale.amount_cents, sale.odometer_km, sale.held,
                           VOIDED in sale.flags.split(","))
        result.rows.append(row)
        if row.held or not counts(sale.flags, sale.volume_cl, sale.amount_cents):
            continue                       # out of every wallet and limit, or of turnover
        # per card by its id: two cards may share a masked number (first 6, last 4); the label shows both
        label = row.card if row.card_id is None else f"{row.card} (card {row.card_id})"
        result.by_card.setdefault(str(row.card_id or row.card), Subtotal(label)).add(row)
        result.by_vehicle.setdefault(row.vehicle or "-", Subtotal(row.vehicle or "-")).add(row)
        result.total.add(row)
    return result


def _table(header: list[str], lines: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    out = [header, *lines]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in out)


def _subtotals(title: str, subtotals: dict[str, Subtotal]) -> str:
    lines = [[t.label, str(t.sales), money(t.volume_cl), money(t.amount_cents)]
             for t in sorted(subtotals.values(), key=lambda t: t.label)]
    return f"\n{title}\n" + _table([title.split()[-1].upper(), "SALES", "LITRES", "AMOUNT"], lines)


def statement_text(st: Statement) -> str:
    head = f"Statement for customer {st.customer_id} {st.customer}, {st.start} to {st.end}\n\n"
    body = _table([c.upper() for c in COLUMNS], [r.fields() for r in st.rows])
    total = (f"\nTotal: {st.total.sales} sales, {money(st.total.volume_cl)} L, "
             f"{money(st.total.amount_cents)} (held and voided sales not counted)\n")
    return head + body + _subtotals("Per card", st.by_card) + _subtotals("Per vehicle", st.by_vehicle) + total


def statement_csv(st: Statement) -> str:
    """One CSV table: a "sale" record per sale, then "card_total", "vehicle_total" and "total" records."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["record", *COLUMNS, "sales"])
    for row in st.rows:
        w.writerow(["sale", *row.fields(), ""])
    for kind, subtotals in (("card_total", st.by_card), ("vehicle_total", st.by_vehicle)):
        for t in sorted(subtotals.values(), key=lambda t: t.label):
            card, vehicle = (t.label, "") if kind == "card_total" else ("", t.label)
            w.writerow([kind, "", card, vehicle, "", "", "", money(t.volume_cl), money(t.amount_cents), "",
                        "", "", t.sales])
    t = st.total
    w.writerow(["total", "", "", "", "", "", "", money(t.volume_cl), money(t.amount_cents), "", "", "",
                t.sales])
    return out.getvalue()


@dataclass(frozen=True)
class WalletLine:
    id: int
    name: str
    unit: str
    mode: str
    balance: int
    credit_limit: int
    available: int
    priority: int
    products: str
    stations: str
    expires_on: dt.date | None
    status: str


@dataclass(frozen=True)
class LimitLine:
    scope: str
    scope_id: int
    period: str
    unit: str
    maximum: int
    used: int

    @property
    def remaining(self) -> int:
        return max(self.maximum - self.used, 0)


@dataclass
class AccountSummary:
    id: int
    name: str
    customer_id: int | None
    status: str
    prompts: str
    timezone: str
    wallets: list[WalletLine] = field(default_factory=list)
    limits: list[LimitLine] = field(default_factory=list)
    cards: list[tuple[int, str, str]] = field(default_factory=list)      # id, masked, status


def account_summary(s: Session, account_id: int, now: dt.datetime) -> AccountSummary:
    """The account's wallets (paying order) and every limit of the account and of each of its cards,
    with what is used in the period holding `now` (settled sales and open authorizations)."""
    a = get(s, Account, account_id, "account")
    out = AccountSummary(a.id, a.name, a.customer_id, a.status, a.prompts, a.timezone)
    for w in s.scalars(select(Wallet).where(Wallet.account_id == a.id).order_by(Wallet.priority, Wallet.id)):
        out.wallets.append(WalletLine(w.id, w.name, w.unit, w.mode, w.balance, w.credit_limit,
                                      ledger.available(s, w, now), w.priority, w.allowed_products, w.stations,
                                      w.expires_on, w.status))
    cards = list(s.scalars(select(Card).where(Card.account_id == a.id).order_by(Card.id)))
    out.cards = [(c.id, c.masked, c.status) for c in cards]
    for scope, scope_id in [("account", a.id), *(("card", c.id) for c in cards)]:
        limits = list(s.scalars(select(Limit).where(Limit.scope == scope, Limit.scope_id == scope_id)
                                .order_by(Limit.id)))
        if limits:
            used = usage.used(s, scope, scope_id, a.timezone, now)
            out.limits += [LimitLine(scope, scope_id, x.period, x.unit, x.maximum,
                                     used.get((x.period, x.unit), 0)) for x in limits]
    return out


def _amount(value: int, unit: str) -> str:
    return {"money": money(value), "volume": money(value) + " L"}.get(unit, str(value))


def summary_text(sm: AccountSummary) -> str:
    head = (f"Account {sm.id} {sm.name} (customer {sm.customer_id}), {sm.status}, time zone {sm.timezone}, "
            f"prompts: {sm.prompts or 'none'}\n\nWallets (paying order)\n")
    wallets = _table(["ID", "NAME", "UNIT", "MODE", "BALANCE", "CREDIT", "AVAILABLE", "PRODUCTS", "STATIONS",
                      "EXPIRES", "STATUS"],
                     [[str(w.id), w.name or "-", w.unit, w.mode, _amount(w.balance, w.unit),
                       _amount(w.credit_limit, w.unit), _amount(w.available, w.unit), w.products or "any",
                       w.stations or "any", str(w.expires_on or "-"), w.status] for w in sm.wallets])
    limits = _table(["SCOPE", "PERIOD", "UNIT", "MAXIMUM", "USED", "REMAINING"],
                    [[f"{x.scope}:{x.scope_id}", x.period, x.unit, _amount(x.maximum, x.unit),
                      _amount(x.used, x.unit), _amount(x.remaining, x.unit)] for x in sm.limits])
    cards = _table(["CARD", "NUMBER", "STATUS"], [[str(i), m, st] for i, m, st in sm.cards])
    return head + wallets + "\nLimits\n" + limits + "\nCards\n" + cards
