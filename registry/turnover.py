"""Turnover reports (issue 16): count of sales, litres and amount per station, pump, product, card, customer
or day, over a period of local days, filtered by station, product, customer and card.

What counts is registry.turnover_rollup's rule (not held, not voided, something flowed), on the station's
local day (registry.turnover_days). Each report is read from the cheapest exact source:
- the daily summary per (day, station, pump, product) for reports by station, pump, product or day with
  filters among those;
- the daily summary per (day, account, product) for reports by customer, product or day of a customer
  (no station filter); a report by customer counts the sales on an account only;
- else straight from transactions: one card's sales by ix_transactions_card_finished, one station's by
  ix_transactions_station_finished, one customer's by ix_transactions_account_finished.
A summary is always read together with the sales above its watermark, straight from transactions, less
the counted sales voided since the rollup, so a report is exact between rollups. The summary's version
(registry.turnover_rollup.state) is read before and after: a rollup committing in between makes the read
start again, so no sale is counted twice. After a station's time zone changed, until the rollup has moved
its sales to their new days, reports go straight to transactions.
`stations` is the user's scope (a station manager's stations; None for all), applied like a station
filter. Queries only; nothing writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, literal, or_, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.models import Account, SalesDaily, SalesDailyAccount, Transaction
from registry.turnover_days import in_period, local_day, station_zones
from registry.turnover_rollup import pending_voids, state, zones_moved

__all__ = ["BY", "LONGEST", "PATHS", "Line", "Report", "TurnoverQuery", "plan", "turnover"]

BY = ("station", "pump", "product", "card", "customer", "day")
PATHS = ("auto", "straight")
LONGEST = dt.timedelta(days=3 * 366)          # the longest period a report covers
Key = tuple[Any, ...]
_STATION_SUMMARY = {"station", "pump", "product", "day"}
_ACCOUNT_SUMMARY = {"customer", "product", "day"}
_TRIES = 3                                     # summary reads a rollup overtook, before going straight


@dataclass(frozen=True)
class TurnoverQuery:
    start: dt.date
    end: dt.date                               # inclusive
    by: str = "station"
    station: str | None = None
    product: str | None = None
    customer_id: int | None = None
    card_id: int | None = None
    stations: frozenset[str] | None = None     # the user's scope; None: every station

    def check(self) -> None:
        if self.by not in BY:
            raise ConfigError(f"group by must be one of {', '.join(BY)}", key="by")
        if self.end < self.start:
            raise ConfigError("the period ends before it starts", key="end")
        if self.end - self.start > LONGEST:
            raise ConfigError("the period is longer than three years", key="start")

    def allowed(self) -> frozenset[str] | None:
        """The stations the report may count: the filter within the scope (None: all)."""
        if self.station is None:
            return self.stations
        if self.stations is not None and self.station not in self.stations:
            return frozenset()
        return frozenset({self.station})

    def dims(self) -> set[str]:
        found = {self.by}
        if self.allowed() is not None:
            found.add("station")
        if self.product is not None:
            found.add("product")
        if self.customer_id is not None:
            found.add("customer")
        if self.card_id is not None:
            found.add("card")
        return found


@dataclass(frozen=True)
class Line:
    key: Key                                   # by station (id,), pump (station, pump), product (code,) ...
    sales: int
    volume_cl: int
    amount_cents: int


@dataclass(frozen=True)
class Report:
    query: TurnoverQuery
    lines: Sequence[Line]
    path: str                                  # "station summary", "account summary" or "straight"
    watermark: int = 0                         # the summary's; sales above it were read straight
    totals: Line = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "totals", Line((), sum(x.sales for x in self.lines),
                                                sum(x.volume_cl for x in self.lines),
                                                sum(x.amount_cents for x in self.lines)))


Tally = dict[Key, list[int]]


def _add(tally: Tally, key: Key, sales: Any, volume: Any, amount: Any) -> None:
    total = tally.setdefault(key, [0, 0, 0])
    total[0] += int(sales)
    total[1] += int(volume or 0)
    total[2] += int(amount or 0)


def _customer_accounts(s: Session, customer_id: int) -> list[int]:
    return list(s.scalars(select(Account.id).where(Account.customer_id == customer_id)).all())


def _to_customers(s: Session, tally: Tally) -> Tally:
    """Fold a tally keyed by (account id,) into one keyed by (customer id,) (None: no account/customer)."""
    ids = sorted(k[0] for k in tally if k[0] is not None)
    owner: dict[int, int | None] = {}
    for at in range(0, len(ids), 500):
        owner.update((account, customer) for account, customer in s.execute(
            select(Account.id, Account.customer_id).where(Account.id.in_(ids[at:at + 500]))))
    folded: Tally = {}
    for (account,), (n, v, a) in tally.items():
        _add(folded, (owner.get(account) if account is not None else None,), n, v, a)
    return folded


def _counted() -> list[ColumnElement[bool]]:
    flags = literal(",") + Transaction.flags + literal(",")
    return [Transaction.held.is_(False), flags.not_like("%,voided,%"),
            or_(Transaction.volume_cl != 0, Transaction.amount_cents != 0)]


def _straight(s: Session, q: TurnoverQuery, accounts: list[int] | None, *, above: int = 0,
              only: list[int] | None = None) -> Tally:
    """The report straight from transactions, keyed by q.by (a customer report by account id): of the
    sales with an id above `above`, or of the sales `only` (voided since they were counted)."""
    counted = _counted()
    if only is not None:
        counted = [counted[0], counted[2], Transaction.id.in_(only)]
    where = [*counted, in_period(q.start, q.end, station_zones(s), q.allowed())]
    if above:
        where.append(Transaction.id > above)
    if q.product is not None:
        where.append(func.coalesce(Transaction.product, "") == q.product)
    if accounts is not None:
        where.append(Transaction.account_id.in_(accounts))
    if q.by == "customer":
        where.append(Transaction.account_id.is_not(None))     # a customer's turnover: sales on an account
    if q.card_id is not None:
        where.append(Transaction.card_id == q.card_id)
    sums = (func.count(), func.sum(Transaction.volume_cl), func.sum(Transaction.amount_cents))
    tally: Tally = {}
    if q.by == "day":
        stmt = select(Transaction.station_id, Transaction.finished_at, Transaction.volume_cl,
                                   Transaction.amount_cents).where(*where)
        zones = station_zones(s)
        for sid, finished, volume, amount in s.execute(stmt.execution_options(yield_per=5000)):
            _add(tally, (local_day(finished, zones.get(sid, "UTC")),), 1, volume, amount)
        return tally
    keys: dict[str, tuple[Any, ...]] = {
        "station": (Transaction.station_id,), "pump": (Transaction.station_id, Transaction.pump),
        "product": (func.coalesce(Transaction.product, ""),), "card": (Transaction.card_id,),
        "customer": (Transaction.account_id,)}
    columns = keys[q.by]
    for row in s.execute(select(*columns, *sums).where(*where).group_by(*columns)):
        _add(tally, tuple(row[:len(columns)]), *row[len(columns):])
    return tally


def _station_summary(s: Session, q: TurnoverQuery) -> Tally:
    keys = {"station": (SalesDaily.station_id,), "pump": (SalesDaily.station_id, SalesDaily.pump),
            "product": (SalesDaily.product,), "day": (SalesDaily.day,)}[q.by]
    stmt = select(*keys, func.sum(SalesDaily.sales), func.sum(SalesDaily.volume_cl),
                  func.sum(SalesDaily.amount_cents)).where(SalesDaily.day >= q.start, SalesDaily.day <= q.end)
    allowed = q.allowed()
    if allowed is not None:
        stmt = stmt.where(SalesDaily.station_id.in_(sorted(allowed)))
    if q.product is not None:
        stmt = stmt.where(SalesDaily.product == q.product)
    tally: Tally = {}
    for row in s.execute(stmt.group_by(*keys)):
        _add(tally, tuple(row[:len(keys)]), *row[len(keys):])
    return tally


def _account_summary(s: Session, q: TurnoverQuery, accounts: list[int] | None) -> Tally:
    keys = {"customer": (SalesDailyAccount.account_id,), "product": (SalesDailyAccount.product,),
            "day": (SalesDailyAccount.day,)}[q.by]
    stmt = select(*keys, func.sum(SalesDailyAccount.sales), func.sum(SalesDailyAccount.volume_cl),
                  func.sum(SalesDailyAccount.amount_cents)).where(SalesDailyAccount.day >= q.start,
                                                                  SalesDailyAccount.day <= q.end)
    if accounts is not None:
        stmt = stmt.where(SalesDailyAccount.account_id.in_(accounts))
    if q.product is not None:
        stmt = stmt.where(SalesDailyAccount.product == q.product)
    tally: Tally = {}
    for row in s.execute(stmt.group_by(*keys)):
        _add(tally, tuple(row[:len(keys)]), *row[len(keys):])
    return tally


def _merge(into: Tally, more: Tally) -> Tally:
    for key, (n, v, a) in more.items():
        _add(into, key, n, v, a)
    return into


def _order(key: Key) -> tuple[Any, ...]:
    """Sorts keys with None last in each place (a sale without a card, a customer)."""
    return tuple((x is None, x if x is not None else 0) for x in key)


def _from_summary(s: Session, q: TurnoverQuery, accounts: list[int] | None,
                  source: str) -> tuple[int, Tally | None]:
    """The summary, less the sales voided since the rollup, plus the sales above its watermark; None when
    a rollup committed meanwhile (the parts would be of two versions) or a station's zone moved."""
    version = state(s)
    if zones_moved(s):
        return 0, None
    mark, audit_mark, _ = version
    read = _station_summary(s, q) if source == "station summary" else _account_summary(s, q, accounts)
    voided = pending_voids(s, mark, audit_mark)
    if voided:
        for key, (n, v, a) in _straight(s, q, accounts, only=voided).items():
            _add(read, key, -n, -v, -a)
    _merge(read, _straight(s, q, accounts, above=mark))
    return mark, read if state(s) == version else None


def plan(q: TurnoverQuery) -> str:
    """Which source answers the query: "station summary", "account summary" or "straight"."""
    dims = q.dims()
    if dims <= _STATION_SUMMARY:
        return "station summary"
    if dims <= _ACCOUNT_SUMMARY:
        return "account summary"
    return "straight"


def turnover(s: Session, q: TurnoverQuery, *, path: str = "auto") -> Report:
    """The report `q` asks for; path "straight" reads transactions only (to compare)."""
    q.check()
    if path not in PATHS:
        raise ConfigError(f"path must be one of {', '.join(PATHS)}", key="path")
    accounts = _customer_accounts(s, q.customer_id) if q.customer_id is not None else None
    source, mark = plan(q) if path == "auto" else "straight", 0
    tally: Tally | None = None
    for _ in range(_TRIES if source != "straight" else 0):
        mark, tally = _from_summary(s, q, accounts, source)
        if tally is not None:
            break
    if tally is None:
        source, mark, tally = "straight", 0, _straight(s, q, accounts)
    if q.by == "customer":
        tally = _to_customers(s, tally)
    lines = [Line(key, n, v, a) for key, (n, v, a) in sorted(tally.items(), key=lambda kv: _order(kv[0]))
             if n != 0]
    return Report(q, lines, source, mark)

