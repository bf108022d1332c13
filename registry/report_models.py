"""The turnover summary (issue 16, reports): sales per day, kept exact by registry.turnover_rollup.

Two daily tables, each small enough to read a year of a network in well under a second:
`sales_daily` per (day, station, pump, product) and `sales_daily_accounts` per (day, account, product).
A day is the station's local day (stations.timezone). `sales_rollup` holds how far the rollup has read
(transactions.id and audit.id), and `sales_rollup_zones` the time zone each station's rows were counted in.
Two indexes on transactions serve the reports that go to the sales themselves: a card's sales, and one
station's sales over a period. Counts and sums only: volumes centilitres, money cents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Date, Index, Integer, String, Table, event
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from registry.modelbase import Base

__all__ = ["CARD_INDEX", "STATION_INDEX", "SalesDaily", "SalesDailyAccount", "SalesRollup", "SalesRollupZone"]


class SalesDaily(Base):
    """Counted sales of one station's pump and product on one local day (product "" for none)."""

    __tablename__ = "sales_daily"
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pump: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    sales: Mapped[int] = mapped_column(BigInteger)
    volume_cl: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)


class SalesDailyAccount(Base):
    """Counted sales of one account (a fleet customer's) and product on one local day of their stations."""

    __tablename__ = "sales_daily_accounts"
    __table_args__ = (Index("ix_sales_daily_accounts_account", "account_id", "day"),)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    sales: Mapped[int] = mapped_column(BigInteger)
    volume_cl: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)


class SalesRollup(Base):
    """How far the rollup has read: every sale with an id up to `sale_id` is in the summary, and every
    audit entry up to `audit_id` (voids) has been applied to it."""

    __tablename__ = "sales_rollup"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    sale_id: Mapped[int] = mapped_column(BigInteger)
    audit_id: Mapped[int] = mapped_column(BigInteger)
    rolled_at: Mapped[dt.datetime | None]


class SalesRollupZone(Base):
    """The time zone a station's sales were counted in: when the station's changes, they are moved."""

    __tablename__ = "sales_rollup_zones"
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))


# Indexes on the sales themselves, added to the transactions table as it is declared (registry.models
# imports this module first) so the migration and the models agree: one card's sales (a card has few), and
# one station's sales of a period (reports by card, or by customer at some stations).
CARD_INDEX = "ix_transactions_card_finished"
STATION_INDEX = "ix_transactions_station_finished"


def _index_sales(table: Table) -> None:
    names = {ix.name for ix in table.indexes}
    if CARD_INDEX not in names:
        Index(CARD_INDEX, table.c.card_id, table.c.finished_at)
    if STATION_INDEX not in names:
        Index(STATION_INDEX, table.c.station_id, table.c.finished_at)


@event.listens_for(Base, "instrument_class", propagate=True)
def _on_declared(mapper: Mapper[Any], cls: type) -> None:
    table = getattr(cls, "__table__", None)
    if isinstance(table, Table) and table.name == "transactions":
        _index_sales(table)


if "transactions" in Base.metadata.tables:          # declared before this module was imported
    _index_sales(Base.metadata.tables["transactions"])
