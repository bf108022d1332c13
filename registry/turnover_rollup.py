"""The rollup that keeps the turnover summary (registry.report_models) exact.

What counts: a stored sale that is not held (registry.checks: held sales are never counted in a report's
totals, and a sale's held mark is set when it is stored and never changed), not voided (registry.voids:
its money went back), and through which something flowed (volume or amount not 0). A sale counts on its
station's local day (registry.turnover_days).

The rollup reads sales by id above its watermark (`sales_rollup.sale_id`), so a late store-and-forward
sale, stored today with a new id, is counted whatever its day. A report reads the summary plus the sales
above the watermark straight from transactions, so it is exact between rollups too. Three things could
make the summary wrong, and each is handled:
- a sale with a lower id committing after the rollup read past it: the rollup reads under a lock that
  waits for every writer of transactions (PostgreSQL: LOCK TABLE ... IN SHARE MODE, held to commit;
  SQLite: the write lock, taken by its first statement), so no sale below the watermark is still to come.
- a void after the sale was counted: a void updates the sale, then writes its audit entry ("sale.void",
  "sale:<id>") in one transaction, so the rollup's lock also waits for it. Audit entries above the second
  watermark (`sales_rollup.audit_id`) whose sale is at or below the sale watermark were counted by an
  earlier rollup and are taken out of the summary again; sales above it are read as they are now.
- a station changing its time zone: its counted sales are moved from the days of the zone they were counted
  in (`sales_rollup_zones`) to the days of the new one.
Run `roll_up` as the first statement of its own transaction, and commit after it; `most` bounds the sales
read at once (ingestion waits for the lock meanwhile), so a first rollup over a history runs in steps.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from registry.models import (
    AuditEntry,
    SalesDaily,
    SalesDailyAccount,
    SalesRollup,
    SalesRollupZone,
    Transaction,
)
from registry.ticker import Ticker
from registry.turnover_days import UTC_NAME, local_day, station_zones

__all__ = ["MOST", "NAME", "PERIOD", "Rolled", "TurnoverRollup", "catch_up", "counts", "pending_voids",
           "roll_up", "state", "watermark", "zones_moved"]

log = logging.getLogger(__name__)

NAME = "turnover"
PERIOD = 60.0                    # seconds between rollups: the reports' straight tail stays a minute's
MOST = 50_000                    # sales read by one rollup at most
VOID = "sale.void"
_IDS = 500                       # sale ids per IN (SQLite's bound parameters are limited)
_LOCK_TIMEOUT = "10s"            # a rollup waiting longer for writers gives up; the next one tries again

Tally = dict[tuple[Any, ...], list[int]]


@dataclass(frozen=True)
class Rolled:
    sale_id: int                 # the watermark now: every sale up to it is in the summary
    sales: int                   # sales read and counted
    voids: int                   # counted sales taken out again
    moved: int                   # counted sales moved to their station's new time zone
    more: bool                   # sales above the watermark left for the next rollup


def counts(flags: str, volume_cl: int, amount_cents: int) -> bool:
    """Whether a stored, not held sale counts in turnover: not voided, and something flowed."""
    return "voided" not in flags.split(",") and (volume_cl != 0 or amount_cents != 0)


def watermark(s: Session) -> int:
    """The highest sale id the summary holds (0 before the first rollup)."""
    return int(s.scalar(select(SalesRollup.sale_id).where(SalesRollup.name == NAME)) or 0)


def state(s: Session) -> tuple[int, int, dt.datetime | None]:
    """The summary's version: (sale watermark, audit watermark, when rolled); (0, 0, None) before any."""
    row = s.execute(select(SalesRollup.sale_id, SalesRollup.audit_id, SalesRollup.rolled_at)
                    .where(SalesRollup.name == NAME)).first()
    return (int(row[0]), int(row[1]), row[2]) if row is not None else (0, 0, None)


def pending_voids(s: Session, sale_id: int, audit_id: int) -> list[int]:
    """Ids of counted sales (up to `sale_id`) voided since the rollup (audit entries above `audit_id`): the
    summary still counts them until the next rollup takes them out."""
    newest = int(s.scalar(select(func.max(AuditEntry.id))) or 0)
    return [row.id for row in _voided_sales(s, audit_id, newest, sale_id)]


def zones_moved(s: Session) -> bool:
    """Whether a station's time zone changed since its sales were counted (the next rollup moves them)."""
    zones = station_zones(s)
    return any(zones.get(z.station_id, UTC_NAME) != z.timezone for z in s.scalars(select(SalesRollupZone)))


def _lock(s: Session) -> SalesRollup:
    """Wait for every writer of transactions, then hold the rollup's state row (see the module's text)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
        s.execute(text("LOCK TABLE transactions IN SHARE MODE"))
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    s.execute(insert(SalesRollup).values(name=NAME, sale_id=0, audit_id=0, rolled_at=None)
              .on_conflict_do_nothing(index_elements=["name"]))     # SQLite: a write first takes the lock
    state = s.scalar(select(SalesRollup).where(SalesRollup.name == NAME).with_for_update()
                     .execution_options(populate_existing=True))
    if state is None:                                    # written just above
        raise RuntimeError("sales_rollup row missing")
    return state


def _add(daily: Tally, accounts: Tally, sign: int, day: dt.date, row: Any) -> None:
    product = row.product or ""
    for tally, key in ((daily, (day, row.station_id, row.pump, product)),
                       (accounts, (day, row.account_id, product))):
        if tally is accounts and row.account_id is None:
            continue
        total = tally.setdefault(key, [0, 0, 0])
        total[0] += sign
        total[1] += sign * row.volume_cl
        total[2] += sign * row.amount_cents


_COLUMNS = (Transaction.id, Transaction.station_id, Transaction.pump, Transaction.product,
            Transaction.account_id, Transaction.finished_at, Transaction.volume_cl, Transaction.amount_cents,
            Transaction.flags)


def _voided_sales(s: Session, audit_from: int, audit_to: int, up_to: int) -> list[Any]:
    """Counted sales (id <= up_to) voided by audit entries in (audit_from, audit_to]."""
    subjects = s.scalars(select(AuditEntry.subject).where(
        AuditEntry.id > audit_from, AuditEntry.id <= audit_to, AuditEntry.action == VOID)).all()
    sale_ids = sorted({subject.removeprefix("sale:") for subject in subjects})
    found: list[Any] = []
    for at in range(0, len(sale_ids), _IDS):
        found += s.execute(select(*_COLUMNS).where(
            Transaction.sale_id.in_(sale_ids[at:at + _IDS]), Transaction.id <= up_to,
            Transaction.held.is_(False))).all()
    return [row for row in found if row.volume_cl != 0 or row.amount_cents != 0]


def _upsert(s: Session, model: type[SalesDaily | SalesDailyAccount], names: Sequence[str],
            tally: Tally) -> None:
    """Add the tally to the summary rows (made when missing)."""
    items = [(key, totals) for key, totals in tally.items() if totals != [0, 0, 0]]
    if not items:
        return
    table = model.__tablename__
    columns = [*names, "sales", "volume_cl", "amount_cents"]
    adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in columns[len(names):])
    if s.get_bind().dialect.name == "postgresql":
        # one statement over arrays: a first rollup writes a million rows in seconds
        types = [model.__table__.c[c].type.compile(s.get_bind().dialect) for c in columns]
        arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(columns, types, strict=True))
        values = {c: [key[i] for key, _ in items] for i, c in enumerate(names)}
        values.update({c: [totals[i] for _, totals in items] for i, c in enumerate(columns[len(names):])})
        s.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
                       f"ON CONFLICT ({', '.join(names)}) DO UPDATE SET {adds}"), values)
        return
    stmt = sqlite.insert(model)
    stmt = stmt.on_conflict_do_update(index_elements=list(names), set_={
        c: getattr(model, c) + getattr(stmt.excluded, c) for c in columns[len(names):]})
    s.execute(stmt, [dict(zip(columns, [*key, *totals], strict=True)) for key, totals in items])


def _stream(s: Session, *where: Any) -> Iterable[Any]:
    return s.execute(select(*_COLUMNS).where(Transaction.held.is_(False), *where)
                     .execution_options(yield_per=5000))


def roll_up(s: Session, now: dt.datetime, *, most: int = MOST) -> Rolled:
    """Bring the summary up to the newest sales (at most `most` of them), voids and time zones."""
    state = _lock(s)
    sale_from, audit_from = int(state.sale_id), int(state.audit_id)
    newest = int(s.scalar(select(func.max(Transaction.id))) or 0)
    sale_to = min(newest, sale_from + most)
    audit_to = max(audit_from, int(s.scalar(select(func.max(AuditEntry.id))) or 0))
    zones = station_zones(s)
    counted_in = {z.station_id: z for z in s.scalars(select(SalesRollupZone)).all()}
    daily: Tally = {}
    accounts: Tally = {}
    voids = 0
    for row in _voided_sales(s, audit_from, audit_to, sale_from):
        zone = counted_in[row.station_id].timezone if row.station_id in counted_in else UTC_NAME
        _add(daily, accounts, -1, local_day(row.finished_at, zone), row)
        voids += 1
    moved = 0
    for sid, was in counted_in.items():
        zone = zones.get(sid, UTC_NAME)
        if was.timezone == zone:
            continue
        for row in _stream(s, Transaction.station_id == sid, Transaction.id <= sale_from):
            if counts(row.flags, row.volume_cl, row.amount_cents):
                _add(daily, accounts, -1, local_day(row.finished_at, was.timezone), row)
                _add(daily, accounts, 1, local_day(row.finished_at, zone), row)
                moved += 1
        was.timezone = zone
    sales = 0
    for row in _stream(s, Transaction.id > sale_from, Transaction.id <= sale_to):
        if row.station_id not in counted_in:
            counted_in[row.station_id] = SalesRollupZone(station_id=row.station_id,
                                                         timezone=zones.get(row.station_id, UTC_NAME))
            s.add(counted_in[row.station_id])
        if counts(row.flags, row.volume_cl, row.amount_cents):
            _add(daily, accounts, 1, local_day(row.finished_at, counted_in[row.station_id].timezone), row)
            sales += 1
    _upsert(s, SalesDaily, ("day", "station_id", "pump", "product"), daily)
    _upsert(s, SalesDailyAccount, ("day", "account_id", "product"), accounts)
    state.sale_id, state.audit_id = sale_to, audit_to
    state.rolled_at = now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo is not None else now
    s.flush()
    return Rolled(sale_to, sales, voids, moved, sale_to < newest)


def catch_up(sessions: sessionmaker[Session], now: dt.datetime, *, most: int = MOST) -> int:
    """Roll up until no sale is left above the watermark, committing each step; the sales counted."""
    counted = 0
    while True:
        with sessions() as s:
            rolled = roll_up(s, now, most=most)
            s.commit()
        counted += rolled.sales
        if not rolled.more:
            return counted


class TurnoverRollup:
    """The registry's worker that keeps the summary a minute behind the sales."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], dt.datetime], *,
                 period: float = PERIOD) -> None:
        self.sessions, self.clock = sessions, clock
        self._ticker = Ticker("registry-turnover-rollup", self.tick, period, log=log,
                              failed="turnover rollup failed")

    def tick(self) -> None:
        catch_up(self.sessions, self.clock())

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
